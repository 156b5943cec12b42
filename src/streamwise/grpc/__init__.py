"""The gRPC transport: grpclib with betterproto2 messages. Only this package imports
grpclib and the generated code in ``streamwise._proto``."""
