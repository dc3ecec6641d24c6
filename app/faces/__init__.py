"""The faces pipeline shared by the service (app/) and the training code (model/).

decode -> detect -> landmarks -> align -> tensor. Everything that turns a photo into the network's input
lives here, so that training, evaluation and serving can never drift apart.
"""

from app.faces.errors import (
    FaceError,
    FaceTooSmall,
    ImageTooLarge,
    InvalidImage,
    MultipleFaces,
    NoFaceDetected,
)
from app.faces.pipeline import (
    PREPROCESS_VERSION,
    FaceBox,
    FacePipeline,
    PipelineConfig,
    crops_to_tensor,
    decode_image,
)

__all__ = [
    "PREPROCESS_VERSION",
    "FaceBox",
    "FaceError",
    "FacePipeline",
    "FaceTooSmall",
    "ImageTooLarge",
    "InvalidImage",
    "MultipleFaces",
    "NoFaceDetected",
    "PipelineConfig",
    "crops_to_tensor",
    "decode_image",
]
