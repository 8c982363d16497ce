"""SignFlow backend with the USE_TORCHSERVE migration flag (FastAPI + WebSocket)."""
