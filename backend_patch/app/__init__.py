"""The backend application: settings, app factory, WebSocket API and the ML pipeline."""
