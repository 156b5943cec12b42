"""Sans-IO protocol pieces: request validation and SSE framing. No trio, quart or grpclib."""
