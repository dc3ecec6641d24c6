"""Everything from a photo's bytes to an embedding: decode -> detect -> landmarks -> align -> embed.

    config     the pipeline's settings as plain data (imports neither torch nor dlib)
    decode     bytes -> RGB array, with the size and format checks
    pipeline   detection, landmarks and the two chip geometries
    prepare    the one function that turns bytes into the chosen face and its chip
    embedder   a model card and its weights, loaded; chips -> unit vectors
    reference  dlib's own C++ network, the yardstick
    errors     what a photo can be refused for

This package imports nothing at import time, so that importing `model.faces.config` stays light.
"""
