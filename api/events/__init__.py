"""Live events: one hub per API process fans the event table out to SSE and WebSocket clients."""
