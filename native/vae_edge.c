/* vae-edge in C: vae.json read with cJSON and checked as the Python runtime checks it (runtime/model.py), the
 * decoder (and a format-2 folder's prior.onnx, as runtime/prior.py) run by onnxruntime's C API from a library
 * loaded with dlopen. */
#define _POSIX_C_SOURCE 200809L
#include "vae_edge.h"

#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxruntime_c_api.h"
#include "sha256.h"

#define BATCH 1024 /* latents per onnxruntime run: bounds memory */

struct vae_model {
    int shape[3], latent_dim;
    const OrtApi *ort;
    OrtEnv *env;
    OrtSession *decoder;
    OrtSession *prior; /* format 2: prior.onnx, noise -> z; NULL in format 1 (z is the noise itself) */
    int prior_u;       /* prior.onnx takes u (a mixture's component) besides eps */
    OrtMemoryInfo *cpu;
    char *z_name, *x_name;
    char ort_version[32];
};

static int fail(char *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, VAE_ERROR_SIZE, fmt, ap);
    va_end(ap);
    for (char *c = err; *c; c++) /* one line, whatever a message from onnxruntime holds */
        if (*c == '\n' || *c == '\r') {
            *c = '\0';
            break;
        }
    return -1;
}

/* The whole file, or NULL with errno set. */
static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *data = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n == cap) {
            unsigned char *more = realloc(data, cap = cap ? 2 * cap : 1 << 16);
            if (!more) {
                free(data);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            data = more;
        }
        got = fread(data + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(data);
        errno = EIO;
        return NULL;
    }
    *len = n;
    return data;
}

/* -- vae.json ----------------------------------------------------------------------------------------- */

static int positive_int(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble == (int)v->valuedouble ? (int)v->valuedouble : 0;
}

/* A format-2 folder's "prior": its name and prior.onnx's noise inputs, eps and maybe u, nothing else (as
   runtime/folder.py's _prior_ok and web/src/folder.js). */
static int prior_ok(const cJSON *prior) {
    const cJSON *noise = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(prior, "sample"), "inputs");
    const cJSON *input;
    if (!cJSON_IsObject(prior) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(prior, "name")) ||
        !cJSON_IsObject(noise) || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(noise, "eps")))
        return 0;
    cJSON_ArrayForEach(input, noise)
        if (strcmp(input->string, "eps") != 0 && strcmp(input->string, "u") != 0) return 0;
    return 1;
}

/* vae.json parsed and checked (format, format_version, input_shape, latent_dim, files, and format 2's prior);
   NULL and err if bad. */
static cJSON *read_meta(const char *folder, int shape[3], int *latent_dim, char *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/vae.json", folder);
    size_t len;
    unsigned char *text = read_all(path, &len);
    if (!text) {
        fail(err, "no exported model at %s; run `vae-export model.pt --out %s` first", folder, folder);
        return NULL;
    }
    /* strict JSON as docs/format.md says: UTF-8 without a byte order mark (cJSON would skip none, but say so) */
    int bom = len >= 3 && text[0] == 0xEF && text[1] == 0xBB && text[2] == 0xBF;
    cJSON *meta = bom ? NULL : cJSON_ParseWithLength((const char *)text, len);
    free(text);
    if (!meta) {
        fail(err, "%s is not readable JSON (corrupt?)", path);
        return NULL;
    }
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(meta, "format");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(meta, "format_version");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(meta, "model");
    const cJSON *input_shape = cJSON_GetObjectItemCaseSensitive(model, "input_shape");
    double v = cJSON_IsNumber(version) ? version->valuedouble : 0; /* 0: not a number, never a version */
    if (!cJSON_IsString(format) || strcmp(format->valuestring, VAE_FORMAT) != 0) {
        fail(err, "%s is not a vae-edge ONNX export (format should be '%s')", path, VAE_FORMAT);
    } else if (v != 1 && v != VAE_FORMAT_VERSION) { /* the versions this reader reads: 1 and 2 */
        char *shown = version ? cJSON_PrintUnformatted(version) : NULL;
        const cJSON *need = cJSON_GetObjectItemCaseSensitive(meta, "min_vae_edge");
        if (v > VAE_FORMAT_VERSION && v == (double)(long long)v) /* as every reader says it (docs/format.md) */
            fail(err, "%s has format_version %s, newer than this vae-edge reads (up to %d); %s%s%s", path, shown,
                 VAE_FORMAT_VERSION, cJSON_IsString(need) ? "it needs vae-edge >= " : "upgrade vae-edge",
                 cJSON_IsString(need) ? need->valuestring : "", "");
        else
            fail(err, "%s has format_version %s; this C reader reads versions 1, %d", path, shown ? shown : "None",
                 VAE_FORMAT_VERSION);
        free(shown);
    } else if (!cJSON_IsArray(input_shape) || cJSON_GetArraySize(input_shape) != 3 ||
               !(shape[0] = positive_int(cJSON_GetArrayItem(input_shape, 0))) ||
               !(shape[1] = positive_int(cJSON_GetArrayItem(input_shape, 1))) ||
               !(shape[2] = positive_int(cJSON_GetArrayItem(input_shape, 2))) ||
               !(*latent_dim = positive_int(cJSON_GetObjectItemCaseSensitive(model, "latent_dim"))) ||
               !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(meta, "files"))) {
        fail(err, "%s lacks valid model.input_shape, model.latent_dim or files", path);
    } else if (v == 2 && !prior_ok(cJSON_GetObjectItemCaseSensitive(meta, "prior"))) {
        fail(err, "%s has format_version 2 but no valid prior (name, and sample.inputs naming eps) (docs/priors.md)",
             path);
    } else {
        return meta;
    }
    cJSON_Delete(meta);
    return NULL;
}

/* docs/format.md's plain path: parts of letters, digits, . _ - joined by /, none starting with . or - (so no
   "..", no absolute path, no backslash, no URL), as runtime/folder.py's PLAIN_PATH and web/src/folder.js. */
static int plain_path(const char *p) {
    int start = 1;
    if (!*p) return 0;
    for (; *p; p++) {
        int word = isalnum((unsigned char)*p) || *p == '_';
        if (start) {
            if (!word) return 0;
            start = 0;
        } else if (*p == '/') {
            start = 1;
        } else if (!(word || *p == '.' || *p == '-')) {
            return 0;
        }
    }
    return !start;
}

/* The bytes of files[key], refused if missing, not a plain path in the folder, or not matching vae.json's sha256. */
static unsigned char *check_file(const char *folder, const cJSON *meta, const char *key, size_t *len, char *path,
                                 char *err) {
    const cJSON *entry = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(meta, "files"), key);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(entry, "path");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(entry, "sha256");
    if (!cJSON_IsString(name) || !cJSON_IsString(sha)) {
        fail(err, "%s/vae.json lists no %s file", folder, key);
        return NULL;
    }
    const char *p = name->valuestring; /* from a file we do not control: keep it inside the folder */
    if (!plain_path(p)) {
        fail(err, "%s/vae.json: %s path '%s' is not a plain path inside the model folder (parts of letters, digits, "
                  ". _ - joined by /)", folder, key, p);
        return NULL;
    }
    snprintf(path, 4096, "%s/%s", folder, p);
    unsigned char *data = read_all(path, len);
    if (!data) {
        fail(err, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    char hex[65];
    sha256_hex(data, *len, hex);
    if (strcmp(hex, sha->valuestring) != 0) {
        free(data);
        fail(err, "%s does not match the sha256 in vae.json (tampered or corrupt); refusing to load it", path);
        return NULL;
    }
    return data;
}

int vae_check(const char *folder, char err[VAE_ERROR_SIZE]) {
    int shape[3], latent_dim, bad = 0;
    cJSON *meta = read_meta(folder, shape, &latent_dim, err), *entry;
    if (!meta) return -1;
    cJSON_ArrayForEach(entry, cJSON_GetObjectItemCaseSensitive(meta, "files")) {
        char path[4096], why[VAE_ERROR_SIZE];
        size_t len;
        unsigned char *data = check_file(folder, meta, entry->string, &len, path, why);
        if (data) {
            free(data);
        } else if (bad++ == 0) {
            memcpy(err, why, VAE_ERROR_SIZE);
        }
    }
    cJSON_Delete(meta);
    return bad;
}

/* -- onnxruntime, loaded with dlopen ------------------------------------------------------------------ */

/* One onnxruntime per process: the first library loaded serves every model. */
static void *ort_library;
static char ort_library_path[4096];

/* onnxruntime/capi/libonnxruntime.so.* of python3's onnxruntime package (found without importing it). */
static int wheel_library(char *out, size_t size) {
    const char *python = getenv("PYTHON") ? getenv("PYTHON") : "python3";
    char cmd[4352], dir[4096] = "";
    snprintf(cmd, sizeof cmd, "'%s' -c \"import importlib.util as u; s = u.find_spec('onnxruntime'); "
             "print(s.submodule_search_locations[0] if s else '')\" 2>/dev/null", python);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    int got = fgets(dir, sizeof dir, p) != NULL;
    pclose(p);
    dir[strcspn(dir, "\n")] = '\0';
    if (!got || !dir[0]) return -1;
    char pattern[4200];
    snprintf(pattern, sizeof pattern, "%s/capi/libonnxruntime.so*", dir);
    glob_t g;
    int found = glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc > 0;
    if (found) snprintf(out, size, "%s", g.gl_pathv[g.gl_pathc - 1]);
    globfree(&g);
    return found ? 0 : -1;
}

static int load_onnxruntime(const char *wanted, char *err) {
    char path[4096];
    if (!wanted) wanted = getenv("VAE_EDGE_ONNXRUNTIME");
    if (wanted && *wanted) {
        snprintf(path, sizeof path, "%s", wanted);
    } else if (wheel_library(path, sizeof path) != 0) {
        snprintf(path, sizeof path, "libonnxruntime.so"); /* the system's, as the dynamic linker finds it */
    }
    if (ort_library) {
        if (strcmp(path, ort_library_path) == 0) return 0;
        return fail(err, "onnxruntime is already loaded from %s in this process; cannot load %s too",
                    ort_library_path, path);
    }
    ort_library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!ort_library)
        return fail(err, "cannot load onnxruntime (%s): pass --onnxruntime PATH/libonnxruntime.so, set "
                         "VAE_EDGE_ONNXRUNTIME, or pip install onnxruntime", dlerror());
    snprintf(ort_library_path, sizeof ort_library_path, "%s", path);
    return 0;
}

/* onnxruntime "X.Y.Z" -> X * 1000 + Y; 0 if not a version */
static int release(const char *v) {
    int major, minor;
    return v && sscanf(v, "%d.%d", &major, &minor) == 2 ? major * 1000 + minor : 0;
}

/* The newest C API this header and the loaded library share: a library serves every API version up to its own
 * release, so ask from the older of the two down to the oldest supported. */
static const OrtApi *ort_api(const char *folder, const cJSON *meta, char *version, char *err) {
    const OrtApiBase *(*get_base)(void) = (const OrtApiBase *(*)(void))dlsym(ort_library, "OrtGetApiBase");
    if (!get_base) {
        fail(err, "%s is not onnxruntime (it has no OrtGetApiBase)", ort_library_path);
        return NULL;
    }
    const OrtApiBase *base = get_base();
    snprintf(version, 32, "%s", base->GetVersionString());
    const cJSON *needs = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(meta, "onnx"),
                                                          "min_onnxruntime");
    if (cJSON_IsString(needs) && release(version) < release(needs->valuestring)) {
        fail(err, "%s needs onnxruntime >= %s (installed: %s at %s); upgrade onnxruntime", folder,
             needs->valuestring, version, ort_library_path);
        return NULL;
    }
    /* API version N came with release 1.N: ask for that first (older releases print a line for each refusal) */
    int minor = release(version) - 1000;
    uint32_t newest = minor > 0 && minor < ORT_API_VERSION ? (uint32_t)minor : ORT_API_VERSION;
    for (uint32_t v = newest; v >= VAE_OLDEST_ONNXRUNTIME_MINOR; v--) {
        const OrtApi *api = base->GetApi(v);
        if (api) return api;
    }
    fail(err, "onnxruntime %s (%s) is older than the oldest this program supports, 1.%d", version, ort_library_path,
         VAE_OLDEST_ONNXRUNTIME_MINOR);
    return NULL;
}

/* an onnxruntime error as ours; the status is released */
static int ort_fail(const OrtApi *ort, OrtStatus *status, char *err, const char *what) {
    fail(err, "%s: %s", what, ort->GetErrorMessage(status));
    ort->ReleaseStatus(status);
    return -1;
}

#define ORT(call, what)                                                  \
    do {                                                                 \
        OrtStatus *status_ = (call);                                     \
        if (status_) return ort_fail(vae->ort, status_, err, (what));     \
    } while (0)

/* Dims of a session's input or output i (-1 where symbolic); returns their count, -1 on error. */
static int io_dims(vae_model *vae, int output, size_t i, int64_t dims[8], char *err) {
    OrtTypeInfo *info;
    const OrtTensorTypeAndShapeInfo *tensor;
    size_t count;
    ORT((output ? vae->ort->SessionGetOutputTypeInfo : vae->ort->SessionGetInputTypeInfo)(vae->decoder, i, &info),
        "onnxruntime");
    OrtStatus *status = vae->ort->CastTypeInfoToTensorInfo(info, &tensor);
    if (!status && tensor) status = vae->ort->GetDimensionsCount(tensor, &count);
    if (!status && tensor && count <= 8) status = vae->ort->GetDimensions(tensor, dims, count);
    vae->ort->ReleaseTypeInfo(info);
    if (status) return ort_fail(vae->ort, status, err, "onnxruntime");
    return tensor && count <= 8 ? (int)count : -1;
}

static void show_dims(char *out, size_t size, const int64_t *dims, int count) {
    size_t n = (size_t)snprintf(out, size, "[");
    for (int i = 0; i < count && n < size; i++)
        n += (size_t)(dims[i] < 0 ? snprintf(out + n, size - n, "%sNone", i ? ", " : "")
                                  : snprintf(out + n, size - n, "%s%lld", i ? ", " : "", (long long)dims[i]));
    if (n < size) snprintf(out + n, size - n, "]");
}

/* The decoder must map z [batch, latent_dim] -> x [batch, C, H, W]. Its "role" metadata is informative only
   (docs/format.md): the graph's inputs and outputs decide, as in the Python and JavaScript readers. */
static int check_decoder(vae_model *vae, const char *folder, char *err) {
    OrtAllocator *alloc;
    size_t inputs, outputs;
    ORT(vae->ort->GetAllocatorWithDefaultOptions(&alloc), "onnxruntime");
    ORT(vae->ort->SessionGetInputCount(vae->decoder, &inputs), "onnxruntime");
    ORT(vae->ort->SessionGetOutputCount(vae->decoder, &outputs), "onnxruntime");
    if (inputs != 1 || outputs != 1)
        return fail(err, "%s: the decoder file is not a decoder (z -> x): it has %zu inputs and %zu outputs%s", folder,
                    inputs, outputs, inputs == 1 && outputs == 2 ? "; encoder and decoder swapped?" : "");
    int64_t z[8], x[8];
    int nz = io_dims(vae, 0, 0, z, err), nx;
    if (nz < 0 || (nx = io_dims(vae, 1, 0, x, err)) < 0) return -1;
    char shown[128];
    if (nx != 4 || x[1] != vae->shape[0] || x[2] != vae->shape[1] || x[3] != vae->shape[2]) {
        show_dims(shown, sizeof shown, x, nx);
        return fail(err, "%s: the decoder returns x of shape %s but vae.json says input_shape [%d, %d, %d]", folder,
                    shown, vae->shape[0], vae->shape[1], vae->shape[2]);
    }
    if (nz != 2 || z[1] != vae->latent_dim) { /* one dim shown as a number, several as a list (as Python does) */
        if (nz == 2) snprintf(shown, sizeof shown, "%lld", (long long)z[1]);
        else show_dims(shown, sizeof shown, z + 1, nz - 1);
        return fail(err, "%s: the decoder and vae.json disagree on latent_dim: vae.json says %d, the decoder takes %s",
                    folder, vae->latent_dim, shown);
    }
    char *name;
    ORT(vae->ort->SessionGetInputName(vae->decoder, 0, alloc, &name), "onnxruntime");
    vae->z_name = strdup(name);
    alloc->Free(alloc, name);
    ORT(vae->ort->SessionGetOutputName(vae->decoder, 0, alloc, &name), "onnxruntime");
    vae->x_name = strdup(name);
    alloc->Free(alloc, name);
    return vae->z_name && vae->x_name ? 0 : fail(err, "out of memory");
}

/* The session of files[key], from the bytes whose sha256 was checked (onnxruntime never reads the file again). */
static int open_session(vae_model *vae, const char *folder, const cJSON *meta, const char *key, int threads,
                        OrtSession **session, char *err) {
    char path[4096];
    size_t len;
    unsigned char *data = check_file(folder, meta, key, &len, path, err);
    if (!data) return -1;
    OrtSessionOptions *options = NULL;
    OrtStatus *status = vae->ort->CreateSessionOptions(&options);
    if (!status) status = vae->ort->SetSessionLogSeverityLevel(options, ORT_LOGGING_LEVEL_ERROR);
    if (!status && threads > 0) status = vae->ort->SetIntraOpNumThreads(options, threads);
    if (!status && threads > 0) status = vae->ort->SetInterOpNumThreads(options, 1);
    if (status) {
        free(data);
        if (options) vae->ort->ReleaseSessionOptions(options);
        return ort_fail(vae->ort, status, err, "onnxruntime");
    }
    status = vae->ort->CreateSessionFromArray(vae->env, data, len, options, session);
    vae->ort->ReleaseSessionOptions(options);
    free(data);
    if (status) {
        fail(err, "%s is not a loadable ONNX model (corrupt?): %s", path, vae->ort->GetErrorMessage(status));
        vae->ort->ReleaseStatus(status);
        return -1;
    }
    return 0;
}

vae_model *vae_load(const char *folder, const vae_options *options, char err[VAE_ERROR_SIZE]) {
    vae_options defaults = {0};
    if (!options) options = &defaults;
    const char *precision = options->precision ? options->precision : "fp32";
    const char *key = strcmp(precision, "fp32") == 0 ? "decoder" : strcmp(precision, "int8") == 0 ? "decoder_int8" : NULL;
    if (!key) {
        fail(err, "precision must be one of fp32, int8, got '%s'", precision);
        return NULL;
    }
    vae_model *vae = calloc(1, sizeof *vae);
    if (!vae) {
        fail(err, "out of memory");
        return NULL;
    }
    cJSON *meta = read_meta(folder, vae->shape, &vae->latent_dim, err);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(meta, "files");
    const cJSON *int8 = cJSON_GetObjectItemCaseSensitive(meta, "int8");
    if (!meta || load_onnxruntime(options->onnxruntime_path, err) != 0 ||
        !(vae->ort = ort_api(folder, meta, vae->ort_version, err))) {
        goto fail;
    }
    if (!cJSON_GetObjectItemCaseSensitive(files, key)) {
        if (strcmp(key, "decoder") != 0 && cJSON_IsObject(int8) && !cJSON_GetObjectItemCaseSensitive(int8, "method"))
            fail(err, "%s has no int8 files: at export their error against fp32 was over the bound (vae-info shows "
                      "it); use precision fp32", folder);
        else if (strcmp(key, "decoder") != 0)
            fail(err, "%s has no int8 files; re-export with `vae-export ... --quantize int8` or use precision fp32",
                 folder);
        else
            fail(err, "%s/vae.json lists no decoder file", folder);
        goto fail;
    }
    OrtStatus *status = vae->ort->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "vae-edge", &vae->env);
    if (!status) status = vae->ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &vae->cpu);
    if (status) {
        ort_fail(vae->ort, status, err, "onnxruntime");
        goto fail;
    }
    if (open_session(vae, folder, meta, key, options->threads, &vae->decoder, err) != 0 ||
        check_decoder(vae, folder, err) != 0)
        goto fail;
    if (cJSON_GetObjectItemCaseSensitive(meta, "format_version")->valuedouble == 2) { /* fp32 at any precision */
        const cJSON *prior = cJSON_GetObjectItemCaseSensitive(meta, "prior");
        const cJSON *noise = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(prior, "sample"),
                                                              "inputs");
        vae->prior_u = cJSON_GetObjectItemCaseSensitive(noise, "u") != NULL;
        if (open_session(vae, folder, meta, "prior", options->threads, &vae->prior, err) != 0) goto fail;
    }
    cJSON_Delete(meta);
    return vae;
fail:
    cJSON_Delete(meta);
    vae_free(vae);
    return NULL;
}

int vae_latent_dim(const vae_model *vae) { return vae->latent_dim; }

void vae_input_shape(const vae_model *vae, int shape[3]) { memcpy(shape, vae->shape, sizeof vae->shape); }

size_t vae_image_size(const vae_model *vae) { return (size_t)vae->shape[0] * vae->shape[1] * vae->shape[2]; }

const char *vae_onnxruntime_version(const vae_model *vae) { return vae->ort_version; }

static int decode_batch(vae_model *vae, const float *z, size_t n, float *x, char *err) {
    int64_t z_shape[2] = {(int64_t)n, vae->latent_dim};
    int64_t x_shape[4] = {(int64_t)n, vae->shape[0], vae->shape[1], vae->shape[2]};
    OrtValue *zv = NULL, *xv = NULL;
    ORT(vae->ort->CreateTensorWithDataAsOrtValue(vae->cpu, (void *)z, n * vae->latent_dim * sizeof(float), z_shape,
                                                 2, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &zv), "onnxruntime");
    OrtStatus *status = vae->ort->CreateTensorWithDataAsOrtValue(
        vae->cpu, x, n * vae_image_size(vae) * sizeof(float), x_shape, 4, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &xv);
    const char *in[1] = {vae->z_name}, *out[1] = {vae->x_name};
    if (!status) status = vae->ort->Run(vae->decoder, NULL, in, (const OrtValue *const *)&zv, 1, out, 1, &xv);
    vae->ort->ReleaseValue(zv);
    if (xv) vae->ort->ReleaseValue(xv);
    return status ? ort_fail(vae->ort, status, err, "the decoder failed to run") : 0;
}

int vae_decode(vae_model *vae, const float *z, size_t n, float *x, char err[VAE_ERROR_SIZE]) {
    if (n == 0) return fail(err, "z holds no latents (N = 0)");
    for (size_t i = 0; i < n * (size_t)vae->latent_dim; i++)
        if (!isfinite(z[i])) return fail(err, "z contains NaN or inf");
    for (size_t i = 0; i < n; i += BATCH) {
        size_t m = n - i < BATCH ? n - i : BATCH;
        if (decode_batch(vae, z + i * vae->latent_dim, m, x + i * vae_image_size(vae), err) != 0) return -1;
    }
    return 0;
}

/* z [n, latent_dim] = prior.onnx(eps [n, latent_dim], u [n]): one run of a batch, eps and u fed by name. */
static int prior_batch(const vae_model *vae, const float *eps, const float *u, size_t n, float *z, char *err) {
    int64_t z_shape[2] = {(int64_t)n, vae->latent_dim};
    size_t bytes = n * vae->latent_dim * sizeof(float);
    OrtValue *in[2] = {NULL, NULL}, *zv = NULL;
    const char *names[2] = {"eps", "u"}, *out[1] = {"z"};
    OrtStatus *status = vae->ort->CreateTensorWithDataAsOrtValue(vae->cpu, (void *)eps, bytes, z_shape, 2,
                                                                 ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in[0]);
    if (!status && vae->prior_u)
        status = vae->ort->CreateTensorWithDataAsOrtValue(vae->cpu, (void *)u, n * sizeof(float), z_shape, 1,
                                                          ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in[1]);
    if (!status) /* z's buffer given: onnxruntime refuses a z of another shape rather than write past it */
        status = vae->ort->CreateTensorWithDataAsOrtValue(vae->cpu, z, bytes, z_shape, 2,
                                                          ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &zv);
    if (!status)
        status = vae->ort->Run(vae->prior, NULL, names, (const OrtValue *const *)in, vae->prior_u ? 2 : 1, out, 1,
                               &zv);
    for (int i = 0; i < 2; i++)
        if (in[i]) vae->ort->ReleaseValue(in[i]);
    if (zv) vae->ort->ReleaseValue(zv);
    return status ? ort_fail(vae->ort, status, err, "prior.onnx failed to run") : 0;
}

/* The noise eps in z replaced by prior.onnx(eps, u), u = vae_uniform(n, seed), BATCH latents a run. */
static int prior_z(const vae_model *vae, size_t n, uint64_t seed, float *z, char *err) {
    size_t d = (size_t)vae->latent_dim, m = n < BATCH ? n : BATCH;
    float *eps = malloc(m * d * sizeof *eps), *u = malloc(n * sizeof *u);
    int rc = eps && u ? 0 : fail(err, "out of memory for %zu latents", n);
    if (!rc) vae_uniform(u, n, seed);
    for (size_t i = 0; !rc && i < n; i += BATCH) {
        m = n - i < BATCH ? n - i : BATCH;
        memcpy(eps, z + i * d, m * d * sizeof *eps); /* onnxruntime's input and output must not overlap */
        rc = prior_batch(vae, eps, u + i, m, z + i * d, err);
    }
    free(eps);
    free(u);
    return rc;
}

int vae_latents(const vae_model *vae, size_t n, uint64_t seed, double temperature, float *z, char err[VAE_ERROR_SIZE]) {
    if (n == 0) return fail(err, "n must be >= 1, got 0");
    if (!isfinite(temperature) || temperature < 0)
        return fail(err, "temperature must be finite and >= 0, got %g", temperature);
    if (seed >= (uint64_t)1 << 53)
        return fail(err, "seed must be an integer in [0, 2^53), got %llu", (unsigned long long)seed);
    size_t count = n * (size_t)vae->latent_dim;
    vae_gaussian(z, count, seed);
    for (size_t i = 0; i < count; i++) z[i] = (float)(z[i] * temperature);
    return vae->prior ? prior_z(vae, n, seed, z, err) : 0; /* temperature scales eps, never u */
}

int vae_sample(vae_model *vae, size_t n, uint64_t seed, double temperature, float *x, char err[VAE_ERROR_SIZE]) {
    float *z = malloc((n ? n : 1) * (size_t)vae->latent_dim * sizeof *z);
    if (!z) return fail(err, "out of memory for %zu latents", n);
    int rc = vae_latents(vae, n, seed, temperature, z, err) || vae_decode(vae, z, n, x, err) ? -1 : 0;
    free(z);
    return rc;
}

void vae_free(vae_model *vae) {
    if (!vae) return;
    if (vae->decoder) vae->ort->ReleaseSession(vae->decoder);
    if (vae->prior) vae->ort->ReleaseSession(vae->prior);
    if (vae->cpu) vae->ort->ReleaseMemoryInfo(vae->cpu);
    if (vae->env) vae->ort->ReleaseEnv(vae->env);
    free(vae->z_name);
    free(vae->x_name);
    free(vae);
}
