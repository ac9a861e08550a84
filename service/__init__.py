"""The FastAPI gateway: ``uvicorn service.app:app``."""
