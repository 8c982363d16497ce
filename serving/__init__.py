"""The TorchServe side of SignFlow: handler, archive builder and local launcher."""
