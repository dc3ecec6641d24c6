"""The research photo sets as the tools read them: identity folders in directories or .tar archives, the LFW
View 2 pairs, and the on-disk cache of detections and chips (sources). Training and evaluation both read them.

    python -m model.datasets --data ../shared/data     # fill the cache once (model/datasets/__main__.py)
"""
