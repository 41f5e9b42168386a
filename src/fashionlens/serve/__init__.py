"""fashionlens.serve: the web service (``fashionlens serve``) and its page.

``create_app(predictor)`` builds the FastAPI app; ``serve_command`` loads a model and runs uvicorn.
FastAPI and uvicorn are imported only when this package is, so the rest of fashionlens works without them.
"""

from fashionlens.serve.app import (
    Limits,
    UploadError,
    check_upload,
    create_app,
    serve_command,
    sniff_image_format,
)

__all__ = ["Limits", "UploadError", "check_upload", "create_app", "serve_command", "sniff_image_format"]
