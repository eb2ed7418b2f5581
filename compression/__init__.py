"""fuxiops.compression: entropy-corrected distillation, EMO-PMS pruning, ONNX export and runtime."""
