"""Errors raised by the faces pipeline. The service maps them to HTTP codes in one place."""


class FaceError(Exception):
    """Base class: a problem with the photo itself, not with the server."""

    code = "face_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidImage(FaceError):
    code = "invalid_image"


class ImageTooLarge(FaceError):
    code = "image_too_large"


class NoFaceDetected(FaceError):
    code = "no_face"


class MultipleFaces(FaceError):
    code = "multiple_faces"


class FaceTooSmall(FaceError):
    code = "face_too_small"
