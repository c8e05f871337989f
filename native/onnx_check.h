/* G1 (docs/format.md): the closed list of what an ONNX file in a model folder may hold, checked on its bytes before
 * onnxruntime sees them. */
#ifndef VAE_ONNX_CHECK_H
#define VAE_ONNX_CHECK_H

#include <stddef.h>

/* 0 if the ModelProto in data holds nothing outside the list; else -1 and a one-line reason in err (size bytes)
 * that starts with path. */
int onnx_check(const unsigned char *data, size_t len, const char *path, char *err, size_t size);

/* The ModelProto's ir_version (field 1) and ai.onnx opset (opset_import, field 8): 0, or -1 where it has none. */
int onnx_versions(const unsigned char *data, size_t len, long long *ir_version, long long *opset);

#endif
