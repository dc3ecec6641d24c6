"""Evaluation: the LFW View 2 protocol and generic pair lists (evaluate), the verification metrics (metrics) and
the threshold calibration on held-out CelebA identities (calibrate).

    python -m model.evaluation lfw --data ../shared/data/lfw-deepfunneled.tar --pairs ../shared/data/lfw-pairs.txt
"""
