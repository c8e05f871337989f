/* vae-edge in C: vae.json read with cJSON and checked as the Python runtime checks it (runtime/model.py), the
 * decoder (and a format-2 folder's prior.onnx, as runtime/prior.py) run by onnxruntime's C API from a library
 * loaded with dlopen. */
#define _XOPEN_SOURCE 700 /* POSIX 2008 and realpath */
#include "vae_edge.h"

#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx_check.h"
#include "onnxruntime_c_api.h"
#include "sha256.h"

#define BATCH VAE_BATCH_SIZE /* latents per onnxruntime run: bounds memory */

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
    char decoder_path[4096], prior_path[4096], score_path[4096]; /* as errors name them */
    OrtSession *score; /* score.onnx, opened on the first vae_score */
    OrtSession *encoder; /* with vae_options.encoder: x -> mu, logvar */
    char *x_in_name;     /* the encoder's input */
    char encoder_path[4096];
    cJSON *meta;       /* vae.json, kept for score.onnx's entry */
    char *folder;
    int threads, binarized; /* binarized: a --binarize model, whose likelihood is defined on 0/1 pixels */
};

/* text as one line of UTF-8, whatever a message from onnxruntime (which may quote a name from the file) holds: cut at
   the first line break, with '?' for every other control byte and every byte that is not part of valid UTF-8. */
static void one_line(char *text) {
    unsigned char *c = (unsigned char *)text;
    while (*c && *c != '\n' && *c != '\r') {
        int len = *c < 0x80 ? 1 : *c < 0xC2 ? 0 : *c < 0xE0 ? 2 : *c < 0xF0 ? 3 : *c < 0xF5 ? 4 : 0;
        int ok = len > 0 && !(len == 1 && (*c < 0x20 || *c == 0x7F));
        for (int k = 1; ok && k < len; k++) ok = (c[k] & 0xC0) == 0x80; /* stops at the terminating 0 */
        if (ok && len > 2) /* no overlong form, no surrogate, nothing past U+10FFFF */
            ok = !(*c == 0xE0 && c[1] < 0xA0) && !(*c == 0xED && c[1] >= 0xA0) && !(*c == 0xF0 && c[1] < 0x90) &&
                 !(*c == 0xF4 && c[1] >= 0x90);
        if (ok) {
            c += len;
        } else {
            *c++ = '?';
        }
    }
    *c = '\0';
}

static int fail(char *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, VAE_ERROR_SIZE, fmt, ap);
    va_end(ap);
    one_line(err);
    return -1;
}

/* -- reading a file of the folder (docs/format.md, rule F1) --------------------------------------------- */

#define META_LIMIT VAE_META_LIMIT /* vae.json's size limit, 1 MiB */
#define META_DEPTH VAE_META_DEPTH /* and its nesting limit */

/* The bytes of path, a file of folder, as every file of a model folder is read: its real path (symlinks followed)
   inside the folder's, opened without blocking and without following a symlink swapped in since, a regular file
   (fstat before any read) of exactly `bytes` bytes; or, with bytes < 0 (vae.json), of at most META_LIMIT bytes.
   NULL and err if not; errno ENOENT (or ENOTDIR) where the file is not there. */
static unsigned char *read_file(const char *folder, const char *path, long long bytes, size_t *len, char *err) {
    char *home = realpath(folder, NULL), *real = home ? realpath(path, NULL) : NULL;
    int fd = -1, done = 0, e = real ? 0 : errno; /* errno on return: 0, but where the path did not resolve */
    unsigned char *data = NULL;
    size_t cap, n = 0, inside = home ? strlen(home) : 0;
    ssize_t got = 1;
    struct stat st;
    if (!real) {
        fail(err, "cannot read %s: %s", path, strerror(e));
    } else if (strncmp(real, home, inside) != 0 || (real[inside] != '/' && strcmp(home, "/") != 0)) {
        fail(err, VAE_MSG_OUTSIDE, path);
    } else if ((fd = open(real, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW)) < 0 || fstat(fd, &st) != 0) {
        fail(err, "cannot read %s: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        fail(err, VAE_MSG_NOT_REGULAR, path);
    } else if (bytes < 0 && st.st_size > META_LIMIT) {
        fail(err, VAE_MSG_META_TOO_LARGE, path);
    } else if (bytes >= 0 && st.st_size != bytes) {
        fail(err, VAE_MSG_WRONG_SIZE, path, (long long)st.st_size, bytes);
    } else if (!(data = malloc(cap = (size_t)(bytes < 0 ? META_LIMIT : bytes) + 1))) {
        fail(err, "out of memory for %s", path);
    } else { /* up to one byte more than allowed, to see a file that grew since fstat */
        while (n < cap && (got = read(fd, data + n, cap - n)) != 0)
            if (got > 0) n += (size_t)got;
            else if (errno != EINTR) break;
        if (got < 0)
            fail(err, "cannot read %s: %s", path, strerror(errno));
        else if (bytes < 0 && n > META_LIMIT)
            fail(err, VAE_MSG_META_TOO_LARGE, path);
        else if (bytes >= 0 && n != (size_t)bytes)
            fail(err, VAE_MSG_WRONG_SIZE, path, (long long)n, bytes);
        else
            *len = n, done = 1;
        if (!done) {
            free(data);
            data = NULL;
        }
    }
    if (fd >= 0) close(fd);
    free(home);
    free(real);
    errno = e;
    return data;
}

/* Nested deeper than META_DEPTH arrays and objects? A scan of the bytes, so that the parser never recurses deeper. */
static int too_deep(const unsigned char *text, size_t len) {
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < len; i++) {
        if (in_string) {
            if (text[i] == '\\') i++;
            else if (text[i] == '"') in_string = 0;
        } else if (text[i] == '"') {
            in_string = 1;
        } else if (text[i] == '[' || text[i] == '{') {
            if (++depth > META_DEPTH) return 1;
        } else if (text[i] == ']' || text[i] == '}') {
            depth--;
        }
    }
    return 0;
}

/* -- vae.json ----------------------------------------------------------------------------------------- */

static int positive_int(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble < (double)VAE_SIZE_BELOW &&
                   v->valuedouble == (int)v->valuedouble ? (int)v->valuedouble : 0;
}

/* Whether format_version v is one of list (VAE_FORMAT_VERSIONS, VAE_PRIOR_VERSIONS). */
static int version_in(double v, const int *list, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (v == list[i]) return 1;
    return 0;
}
#define VERSION_IN(v, LIST) (version_in((v), (const int[])LIST, sizeof((const int[])LIST) / sizeof(int)))

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
    size_t len = 0;
    unsigned char *text = read_file(folder, path, -1, &len, err);
    if (!text) {
        if (errno == ENOENT || errno == ENOTDIR) /* no folder, or no vae.json in it */
            fail(err, VAE_MSG_MISSING, folder, folder);
        return NULL;
    }
    if (too_deep(text, len)) {
        free(text);
        fail(err, VAE_MSG_META_TOO_DEEP, path, META_DEPTH);
        return NULL;
    }
    /* strict JSON as docs/format.md says: UTF-8 without a byte order mark (cJSON would skip none, but say so) */
    int bom = len >= 3 && text[0] == 0xEF && text[1] == 0xBB && text[2] == 0xBF;
    cJSON *meta = bom ? NULL : cJSON_ParseWithLength((const char *)text, len);
    free(text);
    if (!meta) {
        fail(err, VAE_MSG_NOT_JSON, path, "");
        return NULL;
    }
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(meta, "format");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(meta, "format_version");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(meta, "model");
    const cJSON *input_shape = cJSON_GetObjectItemCaseSensitive(model, "input_shape");
    double v = cJSON_IsNumber(version) ? version->valuedouble : 0; /* 0: not a number, never a version */
    if (!cJSON_IsString(format) || strcmp(format->valuestring, VAE_FORMAT) != 0) {
        fail(err, VAE_MSG_META_NOT_FORMAT, path, VAE_FORMAT);
    } else if (!VERSION_IN(v, VAE_FORMAT_VERSIONS)) {
        char *shown = version ? cJSON_PrintUnformatted(version) : NULL;
        const cJSON *need = cJSON_GetObjectItemCaseSensitive(meta, "min_vae_edge");
        if (v > VAE_FORMAT_VERSION_NEWEST && v == (double)(long long)v && cJSON_IsString(need))
            fail(err, VAE_MSG_VERSION_NEWER_NEEDS, path, shown, VAE_FORMAT_VERSION_NEWEST, need->valuestring, "");
        else if (v > VAE_FORMAT_VERSION_NEWEST && v == (double)(long long)v)
            fail(err, VAE_MSG_VERSION_NEWER, path, shown, VAE_FORMAT_VERSION_NEWEST);
        else
            fail(err, VAE_MSG_VERSION_OTHER, path, shown ? shown : "None", VAE_FORMAT_VERSIONS_TEXT);
        free(shown);
    } else if (!cJSON_IsArray(input_shape) || cJSON_GetArraySize(input_shape) != 3 ||
               !(shape[0] = positive_int(cJSON_GetArrayItem(input_shape, 0))) ||
               !(shape[1] = positive_int(cJSON_GetArrayItem(input_shape, 1))) ||
               !(shape[2] = positive_int(cJSON_GetArrayItem(input_shape, 2))) ||
               !(*latent_dim = positive_int(cJSON_GetObjectItemCaseSensitive(model, "latent_dim"))) ||
               !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(meta, "files"))) {
        fail(err, VAE_MSG_META_INVALID, path);
    } else if (VERSION_IN(v, VAE_PRIOR_VERSIONS) && !prior_ok(cJSON_GetObjectItemCaseSensitive(meta, "prior"))) {
        char *shown = cJSON_PrintUnformatted(version);
        fail(err, VAE_MSG_NO_PRIOR, path, shown ? shown : "?");
        free(shown);
    } else {
        return meta;
    }
    cJSON_Delete(meta);
    return NULL;
}

/* docs/format.md's plain path: parts of letters, digits, . _ - joined by /, none starting with . or - (so no
   "..", no absolute path, no backslash, no URL): format_rules.h's characters, as Python's and JavaScript's. */
static int plain_path(const char *p) {
    int start = 1;
    for (; *p; p++) {
        if (start && !strchr(VAE_PATH_FIRST, *p)) return 0;
        if (!start && *p != VAE_PATH_SEPARATOR && !strchr(VAE_PATH_REST, *p)) return 0;
        start = *p == VAE_PATH_SEPARATOR;
    }
    return !start;
}

/* The bytes of files[key] (read_file's rules), refused if its entry lacks path, sha256 or bytes, if its path is
   not a plain path in the folder, or if they do not match vae.json's sha256. */
static unsigned char *check_file(const char *folder, const cJSON *meta, const char *key, size_t *len, char *path,
                                 char *err) {
    const cJSON *entry = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(meta, "files"), key);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(entry, "path");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(entry, "sha256");
    const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(entry, "bytes");
    double size = cJSON_IsNumber(bytes) ? bytes->valuedouble : -1;
    char meta_path[4096];
    snprintf(meta_path, sizeof meta_path, "%s/vae.json", folder);
    if (!cJSON_IsString(name) || !cJSON_IsString(sha) ||
        !(size >= 0 && size < (double)VAE_SIZE_BELOW && size == floor(size))) {
        fail(err, VAE_MSG_NO_ENTRY, meta_path, key);
        return NULL;
    }
    const char *p = name->valuestring; /* from a file we do not control: keep it inside the folder */
    if (!plain_path(p)) {
        fail(err, VAE_MSG_NOT_PLAIN, meta_path, key, p);
        return NULL;
    }
    snprintf(path, 4096, "%s/%s", folder, p);
    unsigned char *data = read_file(folder, path, (long long)size, len, err);
    if (!data) return NULL;
    char hex[65];
    sha256_hex(data, *len, hex);
    if (strcmp(hex, sha->valuestring) != 0) {
        free(data);
        fail(err, VAE_MSG_SHA256, path);
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
static const OrtApi *ort_api(char *version, char *err) {
    const OrtApiBase *(*get_base)(void) = (const OrtApiBase *(*)(void))dlsym(ort_library, "OrtGetApiBase");
    if (!get_base) {
        fail(err, "%s is not onnxruntime (it has no OrtGetApiBase)", ort_library_path);
        return NULL;
    }
    const OrtApiBase *base = get_base();
    snprintf(version, 32, "%s", base->GetVersionString());
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

/* The element type and dims (-1 where symbolic) of a session's input or output i; returns the dims' count (at most
   8 kept), -1 on error. A value that is not a tensor has type UNDEFINED and no dims. */
static int io_info(vae_model *vae, OrtSession *session, int output, size_t i, ONNXTensorElementDataType *type,
                   int64_t dims[8], char *err) {
    OrtTypeInfo *info;
    const OrtTensorTypeAndShapeInfo *tensor;
    size_t count = 0;
    *type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    ORT((output ? vae->ort->SessionGetOutputTypeInfo : vae->ort->SessionGetInputTypeInfo)(session, i, &info),
        "onnxruntime");
    OrtStatus *status = vae->ort->CastTypeInfoToTensorInfo(info, &tensor);
    if (!status && tensor) status = vae->ort->GetTensorElementType(tensor, type);
    if (!status && tensor) status = vae->ort->GetDimensionsCount(tensor, &count);
    if (!status && tensor) status = vae->ort->GetDimensions(tensor, dims, count < 8 ? count : 8);
    vae->ort->ReleaseTypeInfo(info);
    if (status) return ort_fail(vae->ort, status, err, "onnxruntime");
    return count < 8 ? (int)count : 8;
}

static int io_dims(vae_model *vae, int output, size_t i, int64_t dims[8], char *err) {
    ONNXTensorElementDataType type;
    return io_info(vae, vae->decoder, output, i, &type, dims, err);
}

/* dims as [1, None, 3] (None: symbolic), as Python prints a shape */
static void show_dims(char *out, size_t size, const int64_t *dims, int count) {
    size_t n = (size_t)snprintf(out, size, "[");
    for (int i = 0; i < count && n < size; i++)
        n += (size_t)(dims[i] < 0 ? snprintf(out + n, size - n, "%sNone", i ? ", " : "")
                                  : snprintf(out + n, size - n, "%s%lld", i ? ", " : "", (long long)dims[i]));
    if (n < size) snprintf(out + n, size - n, "]");
}

/* An element type as ONNX (and numpy) names it. */
static const char *type_name(ONNXTensorElementDataType type) {
    static const char *const names[] = {"undefined", "float32", "uint8", "int8", "uint16", "int16", "int32",
                                        "int64", "string", "bool", "float16", "float64", "uint32", "uint64",
                                        "complex64", "complex128", "bfloat16"};
    return (unsigned)type < sizeof names / sizeof *names ? names[type] : "an unknown type";
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
        return fail(err, VAE_MSG_NOT_DECODER, folder, inputs, outputs, inputs == 1 && outputs == 2 ? VAE_MSG_SWAPPED : "");
    int64_t z[8], x[8];
    int nz = io_dims(vae, 0, 0, z, err), nx;
    if (nz < 0 || (nx = io_dims(vae, 1, 0, x, err)) < 0) return -1;
    char shown[128], want[64];
    if (nx != 4 || x[1] != vae->shape[0] || x[2] != vae->shape[1] || x[3] != vae->shape[2]) {
        show_dims(shown, sizeof shown, x, nx);
        snprintf(want, sizeof want, "[%d, %d, %d]", vae->shape[0], vae->shape[1], vae->shape[2]);
        return fail(err, VAE_MSG_DECODER_SHAPE, folder, shown, want);
    }
    if (nz != 2 || z[1] != vae->latent_dim) { /* one dim shown as a number, several as a list (as Python does) */
        if (nz == 2) snprintf(shown, sizeof shown, "%lld", (long long)z[1]);
        else show_dims(shown, sizeof shown, z + 1, nz > 0 ? nz - 1 : 0);
        return fail(err, VAE_MSG_DECODER_LATENT, folder, vae->latent_dim, shown);
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

/* The encoder must map x [batch, C, H, W] -> mu and logvar [batch, latent_dim] (its outputs named so, in either
   order), in runtime/graph.py's words. */
static int check_encoder(vae_model *vae, const char *folder, char *err) {
    OrtAllocator *alloc;
    size_t inputs, outputs;
    ORT(vae->ort->GetAllocatorWithDefaultOptions(&alloc), "onnxruntime");
    ORT(vae->ort->SessionGetInputCount(vae->encoder, &inputs), "onnxruntime");
    ORT(vae->ort->SessionGetOutputCount(vae->encoder, &outputs), "onnxruntime");
    if (inputs != 1 || outputs != 2)
        return fail(err, VAE_MSG_NOT_ENCODER, folder, inputs, outputs, inputs == 1 && outputs == 1 ? VAE_MSG_SWAPPED : "");
    char *names[2];
    ORT(vae->ort->SessionGetOutputName(vae->encoder, 0, alloc, &names[0]), "onnxruntime");
    OrtStatus *status = vae->ort->SessionGetOutputName(vae->encoder, 1, alloc, &names[1]);
    if (status) {
        alloc->Free(alloc, names[0]);
        return ort_fail(vae->ort, status, err, "onnxruntime");
    }
    int first = strcmp(names[0], names[1]) <= 0 ? 0 : 1; /* sorted, as Python names them */
    int named = strcmp(names[first], "logvar") == 0 && strcmp(names[1 - first], "mu") == 0;
    if (!named) {
        char shown[VAE_ERROR_SIZE / 2];
        snprintf(shown, sizeof shown, "%s, %s", names[first], names[1 - first]);
        fail(err, VAE_MSG_ENCODER_NAMES, folder, shown);
    }
    alloc->Free(alloc, names[0]);
    alloc->Free(alloc, names[1]);
    if (!named) return -1;
    int64_t x[8], d[8];
    ONNXTensorElementDataType type;
    int nx = io_info(vae, vae->encoder, 0, 0, &type, x, err);
    if (nx < 0) return -1;
    char shown[128], want[64];
    if (nx != 4 || x[1] != vae->shape[0] || x[2] != vae->shape[1] || x[3] != vae->shape[2]) {
        show_dims(shown, sizeof shown, x, nx);
        snprintf(want, sizeof want, "[%d, %d, %d]", vae->shape[0], vae->shape[1], vae->shape[2]);
        return fail(err, VAE_MSG_ENCODER_SHAPE, folder, shown, want);
    }
    for (size_t i = 0; i < 2; i++) {
        int nd = io_info(vae, vae->encoder, 1, i, &type, d, err);
        if (nd < 0) return -1;
        if (nd != 2 || d[1] != vae->latent_dim) {
            show_dims(shown, sizeof shown, d + 1, nd > 0 ? nd - 1 : 0);
            return fail(err, "%s: the encoder and vae.json disagree on latent_dim: vae.json says %d, the encoder "
                             "gives %s", folder, vae->latent_dim, shown);
        }
    }
    char *name;
    ORT(vae->ort->SessionGetInputName(vae->encoder, 0, alloc, &name), "onnxruntime");
    vae->x_in_name = strdup(name);
    alloc->Free(alloc, name);
    return vae->x_in_name ? 0 : fail(err, "out of memory");
}

/* Appends "name type [dims]" of a session's input or output i to out (dims: ints, and the names of symbolic axes,
   None where unnamed, as Python prints them); 1 if it is float32 of the dims that `want` (the latent size, -1 for
   a symbolic axis) gives the name among eps [batch, D], u [batch] and z [batch, D], else 0; -1 on error. */
static int describe(vae_model *vae, OrtSession *session, int output, size_t i, const char *const *wanted, char *out,
                    size_t size, char *err) {
    OrtAllocator *alloc;
    OrtTypeInfo *info;
    const OrtTensorTypeAndShapeInfo *tensor = NULL;
    ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    size_t count = 0, n = strlen(out);
    int64_t dims[8];
    const char *symbols[8];
    char *name;
    ORT(vae->ort->GetAllocatorWithDefaultOptions(&alloc), "onnxruntime");
    ORT((output ? vae->ort->SessionGetOutputName : vae->ort->SessionGetInputName)(session, i, alloc, &name),
        "onnxruntime");
    OrtStatus *status = (output ? vae->ort->SessionGetOutputTypeInfo : vae->ort->SessionGetInputTypeInfo)(
        session, i, &info);
    if (!status) status = vae->ort->CastTypeInfoToTensorInfo(info, &tensor);
    if (!status && tensor) status = vae->ort->GetTensorElementType(tensor, &type);
    if (!status && tensor) status = vae->ort->GetDimensionsCount(tensor, &count);
    if (count > 8) count = 8;
    if (!status && tensor) status = vae->ort->GetDimensions(tensor, dims, count);
    if (!status && tensor) status = vae->ort->GetSymbolicDimensions(tensor, symbols, count);
    int rank = strcmp(name, "u") == 0 ? 1 : 2, fits = 0;
    for (const char *const *w = wanted; *w; w++) /* a wanted name, float32, [symbolic batch, (latent_dim)] */
        fits |= strcmp(name, *w) == 0 && type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT && count == (size_t)rank &&
                dims[0] < 0 && (rank == 1 || dims[1] == vae->latent_dim);
    n += (size_t)snprintf(out + n, n < size ? size - n : 0, "%s%s %s [", n ? ", " : "", name, type_name(type));
    for (size_t k = 0; !status && k < count && n < size; k++)
        n += (size_t)(dims[k] >= 0 ? snprintf(out + n, size - n, "%s%lld", k ? ", " : "", (long long)dims[k])
                                   : snprintf(out + n, size - n, "%s%s", k ? ", " : "",
                                              symbols[k] && *symbols[k] ? symbols[k] : "None"));
    if (n < size) snprintf(out + n, size - n, "]");
    vae->ort->ReleaseTypeInfo(info);
    alloc->Free(alloc, name);
    if (status) return ort_fail(vae->ort, status, err, "onnxruntime");
    return fits;
}

/* prior.onnx must map the noise that vae.json's prior.sample.inputs names, eps [batch, latent_dim] (and u [batch]),
   float32, to z [batch, latent_dim], float32 (docs/priors.md), as runtime/graph.py's check_prior. The names are
   onnxruntime's, who keeps them unique. */
static int check_prior(vae_model *vae, char *err) {
    size_t inputs, outputs, want = vae->prior_u ? 2 : 1;
    const char *noise[3] = {"eps", vae->prior_u ? "u" : NULL, NULL}, *z[2] = {"z", NULL};
    char got_in[512] = "", got_out[512] = "";
    ORT(vae->ort->SessionGetInputCount(vae->prior, &inputs), "onnxruntime");
    ORT(vae->ort->SessionGetOutputCount(vae->prior, &outputs), "onnxruntime");
    int fits = inputs == want && outputs == 1;
    for (size_t i = 0; i < inputs + outputs; i++) {
        int output = i >= inputs, one = output ? describe(vae, vae->prior, 1, i - inputs, z, got_out, sizeof got_out,
                                                          err)
                                               : describe(vae, vae->prior, 0, i, noise, got_in, sizeof got_in, err);
        if (one < 0) return -1;
        fits = fits && one;
    }
    if (fits) return 0;
    char want_in[96], want_out[64];
    snprintf(want_in, sizeof want_in, "eps float32 [batch, %d]%s", vae->latent_dim,
             vae->prior_u ? ", u float32 [batch]" : "");
    snprintf(want_out, sizeof want_out, "z float32 [batch, %d]", vae->latent_dim);
    return fail(err, VAE_MSG_NOT_DESCRIBED, vae->prior_path, "prior", inputs ? got_in : "nothing",
                outputs ? got_out : "nothing", want_in, want_out);
}

/* Rule 4h of docs/format.md, as runtime/compat.py: a file of IR version ir and opset against what the onnxruntime
   `installed` reads, by format_rules.h's table. Before a session (refused: 1 with err where the table says the
   release cannot read it; releases after the table's last row are not limited here), or after an onnxruntime newer
   than the table refused the file (refused_by_it: 1 with err where no release in the table reads the file). */
static int too_new(const char *path, long long ir, long long opset, const char *installed, int refused_by_it,
                   char *err) {
    static const int reads[][4] = VAE_ONNXRUNTIME_READS;
    const size_t rows = sizeof reads / sizeof reads[0];
    int at = release(installed), can = -1, need = -1; /* can: the installed release's row; need: the file's */
    for (size_t i = 0; i < rows; i++) {
        if (reads[i][0] * 1000 + reads[i][1] <= at) can = (int)i;
        if (need < 0 && ir <= reads[i][2] && opset <= reads[i][3]) need = (int)i;
    }
    int beyond = at > reads[rows - 1][0] * 1000 + reads[rows - 1][1];
    if (refused_by_it ? need >= 0 : beyond || (can >= 0 && ir <= reads[can][2] && opset <= reads[can][3])) return 0;
    char needs[64], fix[96];
    if (refused_by_it) snprintf(needs, sizeof needs, VAE_MSG_NEEDS_NEWER, installed);
    else if (need >= 0) {
        char r[16];
        snprintf(r, sizeof r, "%d.%d", reads[need][0], reads[need][1]);
        snprintf(needs, sizeof needs, VAE_MSG_NEEDS_RELEASE, r);
    } else {
        char r[16];
        snprintf(r, sizeof r, "%d.%d", reads[rows - 1][0], reads[rows - 1][1]);
        snprintf(needs, sizeof needs, VAE_MSG_NEEDS_NEWER, r);
    }
    if (can >= 0) {
        snprintf(fix, sizeof fix, VAE_MSG_FIX_OPSET, (long long)reads[can][3]);
    } else {
        char r[16];
        snprintf(r, sizeof r, "%d.%d", reads[0][0], reads[0][1]);
        snprintf(fix, sizeof fix, VAE_MSG_FIX_UPGRADE, r);
    }
    fail(err, VAE_MSG_ONNX_TOO_NEW, path, needs, installed, ir, opset, fix);
    return 1;
}

/* The session of files[key], from the bytes whose sha256 was checked (onnxruntime never reads the file again), once
   they hold nothing outside the closed list (onnx_check.h): no tensor stored in another file, which onnxruntime
   would look for relative to the working directory. path: the file's path, for the errors of its runs. */
static int open_session(vae_model *vae, const char *folder, const cJSON *meta, const char *key, int threads,
                        OrtSession **session, char *path, char *err) {
    size_t len;
    unsigned char *data = check_file(folder, meta, key, &len, path, err);
    if (!data) return -1;
    long long ir, opset;
    if (onnx_check(data, len, path, err, VAE_ERROR_SIZE) != 0 ||
        (onnx_versions(data, len, &ir, &opset) != 0 &&
         fail(err, VAE_MSG_NOT_ONNX, path, "no ir_version or ai.onnx opset_import")) ||
        too_new(path, ir, opset, vae->ort_version, 0, err)) {
        free(data);
        return -1;
    }
    OrtSessionOptions *options = NULL;
    OrtStatus *status = vae->ort->CreateSessionOptions(&options);
    if (!status) status = vae->ort->SetSessionLogSeverityLevel(options, ORT_LOGGING_LEVEL_FATAL);
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
        if (!too_new(path, ir, opset, vae->ort_version, 1, err))
            fail(err, VAE_MSG_NOT_ONNX, path, vae->ort->GetErrorMessage(status));
        vae->ort->ReleaseStatus(status);
        return -1;
    }
    return 0;
}

vae_model *vae_load(const char *folder, const vae_options *options, char err[VAE_ERROR_SIZE]) {
    vae_options defaults = {0};
    if (!options) options = &defaults;
    const char *precision = options->precision ? options->precision : "fp32";
    static const char *const precisions[][3] = VAE_PRECISIONS; /* {precision, encoder key, decoder key} */
    const char *const *keys = NULL;
    for (size_t i = 0; i < sizeof precisions / sizeof precisions[0]; i++)
        if (strcmp(precision, precisions[i][0]) == 0) keys = precisions[i];
    if (!keys) {
        char shown[VAE_ERROR_SIZE / 2];
        snprintf(shown, sizeof shown, "'%s'", precision);
        fail(err, VAE_MSG_PRECISION, VAE_PRECISIONS_TEXT, shown);
        return NULL;
    }
    const char *key = keys[2];
    vae_model *vae = calloc(1, sizeof *vae);
    if (!vae) {
        fail(err, "out of memory");
        return NULL;
    }
    cJSON *meta = read_meta(folder, vae->shape, &vae->latent_dim, err);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(meta, "files");
    const cJSON *int8 = cJSON_GetObjectItemCaseSensitive(meta, "int8");
    if (!meta || load_onnxruntime(options->onnxruntime_path, err) != 0 ||
        !(vae->ort = ort_api(vae->ort_version, err))) {
        goto fail;
    }
    if (strcmp(precision, "int8") == 0 && /* both files listed, as every reader asks (step 3 of docs/format.md) */
        !(cJSON_GetObjectItemCaseSensitive(files, keys[1]) && cJSON_GetObjectItemCaseSensitive(files, key))) {
        if (cJSON_IsObject(int8) && !cJSON_GetObjectItemCaseSensitive(int8, "method"))
            fail(err, VAE_MSG_INT8_OVER_BOUND, folder, "fp32");
        else
            fail(err, VAE_MSG_INT8_MISSING, folder, "fp32");
        goto fail;
    }
    /* onnxruntime's errors come back as statuses, said in one line: its own log stays quiet */
    OrtStatus *status = vae->ort->CreateEnv(ORT_LOGGING_LEVEL_FATAL, "vae-edge", &vae->env);
    if (!status) status = vae->ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &vae->cpu);
    if (status) {
        ort_fail(vae->ort, status, err, "onnxruntime");
        goto fail;
    }
    if (open_session(vae, folder, meta, key, options->threads, &vae->decoder, vae->decoder_path, err) != 0 ||
        check_decoder(vae, folder, err) != 0)
        goto fail;
    if (options->encoder && (open_session(vae, folder, meta, keys[1],
                                          options->threads, &vae->encoder, vae->encoder_path, err) != 0 ||
                             check_encoder(vae, folder, err) != 0))
        goto fail;
    if (VERSION_IN(cJSON_GetObjectItemCaseSensitive(meta, "format_version")->valuedouble, VAE_PRIOR_VERSIONS)) {
        /* prior.onnx, fp32 at any precision */
        const cJSON *prior = cJSON_GetObjectItemCaseSensitive(meta, "prior");
        const cJSON *noise = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(prior, "sample"),
                                                              "inputs");
        vae->prior_u = cJSON_GetObjectItemCaseSensitive(noise, "u") != NULL;
        if (open_session(vae, folder, meta, "prior", options->threads, &vae->prior, vae->prior_path, err) != 0 ||
            check_prior(vae, err) != 0)
            goto fail;
    }
    vae->meta = meta; /* kept for score.onnx, read on the first vae_score */
    vae->threads = options->threads;
    vae->binarized = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(meta, "recipe"),
                                                                  "binarize"));
    if (!(vae->folder = malloc(strlen(folder) + 1))) {
        fail(err, "out of memory");
        goto fail;
    }
    strcpy(vae->folder, folder);
    return vae;
fail:
    if (vae->meta != meta) cJSON_Delete(meta);
    vae_free(vae);
    return NULL;
}

int vae_latent_dim(const vae_model *vae) { return vae->latent_dim; }

void vae_input_shape(const vae_model *vae, int shape[3]) { memcpy(shape, vae->shape, sizeof vae->shape); }

size_t vae_image_size(const vae_model *vae) { return (size_t)vae->shape[0] * vae->shape[1] * vae->shape[2]; }

const char *vae_onnxruntime_version(const vae_model *vae) { return vae->ort_version; }

/* value, which must be float32 of exactly the dims want (rule G3: a graph may return anything), copied to dst. */
static int check_output(const vae_model *vae, OrtValue *value, const char *path, const char *what,
                        const int64_t *want, int rank, float *dst, char *err) {
    const OrtApi *ort = vae->ort;
    OrtTensorTypeAndShapeInfo *info = NULL;
    ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    size_t ndim = 0, size = 1;
    int64_t dims[8];
    int tensor = 0, same = 0;
    void *data;
    OrtStatus *status = ort->IsTensor(value, &tensor);
    if (!status && tensor) status = ort->GetTensorTypeAndShape(value, &info);
    if (!status && info) status = ort->GetTensorElementType(info, &type);
    if (!status && info) status = ort->GetDimensionsCount(info, &ndim);
    if (!status && info) status = ort->GetDimensions(info, dims, ndim < 8 ? ndim : 8);
    if (!status && tensor) {
        same = type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT && ndim == (size_t)rank;
        for (int i = 0; same && i < rank; i++) same = dims[i] == want[i], size *= (size_t)want[i];
    }
    if (!status && same) status = ort->GetTensorMutableData(value, &data);
    if (!status && same) memcpy(dst, data, size * sizeof *dst);
    if (info) ort->ReleaseTensorTypeAndShapeInfo(info);
    if (status) return ort_fail(ort, status, err, what);
    if (same) return 0;
    char got[128], shown[160], expected[128];
    show_dims(got, sizeof got, dims, ndim < 8 ? (int)ndim : 8);
    show_dims(expected, sizeof expected, want, rank);
    snprintf(shown, sizeof shown, "%s %s", tensor ? type_name(type) : "a non-tensor", tensor ? got : "value");
    return fail(err, VAE_MSG_RETURNED, path, shown, expected);
}

/* One run of session with outputs outs[0 .. nout - 1] (nout at most 2), each float32 of exactly the dims want, copied to dsts. */
static int run_outputs(const vae_model *vae, OrtSession *session, const char *path, const char *what,
                       const char *const *names, const OrtValue *const *inputs, size_t count,
                       const char *const *outs, size_t nout, const int64_t *want, int rank, float *const *dsts,
                       char *err) {
    OrtValue *values[2] = {NULL, NULL};
    OrtStatus *status = vae->ort->Run(session, NULL, names, inputs, count, outs, nout, values);
    if (status) {
        fail(err, VAE_MSG_FAILED_TO_RUN, path, vae->ort->GetErrorMessage(status));
        vae->ort->ReleaseStatus(status);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < nout; i++) {
        if (!rc) rc = check_output(vae, values[i], path, what, want, rank, dsts[i], err);
        vae->ort->ReleaseValue(values[i]);
    }
    return rc;
}

/* One run of session (the file at path) with one output `out`, checked and copied to dst as above. what: the run's
   name in onnxruntime's errors. */
static int run(const vae_model *vae, OrtSession *session, const char *path, const char *what,
               const char *const *names, const OrtValue *const *inputs, size_t count, const char *out,
               const int64_t *want, int rank, float *dst, char *err) {
    const char *outs[1] = {out};
    float *dsts[1] = {dst};
    return run_outputs(vae, session, path, what, names, inputs, count, outs, 1, want, rank, dsts, err);
}

static int decode_batch(vae_model *vae, const float *z, size_t n, float *x, char *err) {
    int64_t z_shape[2] = {(int64_t)n, vae->latent_dim};
    int64_t x_shape[4] = {(int64_t)n, vae->shape[0], vae->shape[1], vae->shape[2]};
    OrtValue *zv = NULL;
    ORT(vae->ort->CreateTensorWithDataAsOrtValue(vae->cpu, (void *)z, n * vae->latent_dim * sizeof(float), z_shape,
                                                 2, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &zv), "onnxruntime");
    const char *in[1] = {vae->z_name};
    int rc = run(vae, vae->decoder, vae->decoder_path, "the decoder failed to run", in, (const OrtValue *const *)&zv,
                 1, vae->x_name, x_shape, 4, x, err);
    vae->ort->ReleaseValue(zv);
    return rc;
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
    OrtValue *in[2] = {NULL, NULL};
    const char *names[2] = {"eps", "u"};
    OrtStatus *status = vae->ort->CreateTensorWithDataAsOrtValue(vae->cpu, (void *)eps, n * vae->latent_dim *
                                                                 sizeof(float), z_shape, 2,
                                                                 ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in[0]);
    if (!status && vae->prior_u)
        status = vae->ort->CreateTensorWithDataAsOrtValue(vae->cpu, (void *)u, n * sizeof(float), z_shape, 1,
                                                          ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in[1]);
    int rc = status ? ort_fail(vae->ort, status, err, "onnxruntime")
                    : run(vae, vae->prior, vae->prior_path, "prior.onnx failed to run", names,
                          (const OrtValue *const *)in, vae->prior_u ? 2 : 1, "z", z_shape, 2, z, err);
    for (int i = 0; i < 2; i++)
        if (in[i]) vae->ort->ReleaseValue(in[i]);
    return rc;
}

/* The noise eps in z replaced by prior.onnx(eps, u), u = vae_uniform(n, seed), BATCH latents a run (each run's
   output is copied into z once the run is over, so eps can be read from where z goes). */
static int prior_z(const vae_model *vae, size_t n, uint64_t seed, float *z, char *err) {
    size_t d = (size_t)vae->latent_dim;
    float *u = malloc(n * sizeof *u);
    int rc = u ? 0 : fail(err, "out of memory for %zu latents", n);
    if (!rc) vae_uniform(u, n, seed);
    for (size_t i = 0; !rc && i < n; i += BATCH)
        rc = prior_batch(vae, z + i * d, u + i, n - i < BATCH ? n - i : BATCH, z + i * d, err);
    free(u);
    return rc;
}

int vae_latents(const vae_model *vae, size_t n, uint64_t seed, double temperature, float *z, char err[VAE_ERROR_SIZE]) {
    if (n == 0) return fail(err, VAE_MSG_COUNT_POSITIVE, "n", n);
    if (n > VAE_MAX_COUNT) return fail(err, VAE_MSG_COUNT_LIMIT, "n", VAE_MAX_COUNT, n);
    if (!isfinite(temperature) || temperature < 0) return fail(err, VAE_MSG_TEMPERATURE, temperature);
    if (seed >= (uint64_t)1 << 53) return fail(err, VAE_MSG_SEED, (unsigned long long)seed);
    size_t count = n * (size_t)vae->latent_dim;
    vae_gaussian(z, count, seed);
    for (size_t i = 0; i < count; i++) z[i] = (float)(z[i] * temperature);
    return vae->prior ? prior_z(vae, n, seed, z, err) : 0; /* temperature scales eps, never u */
}

int vae_sample(vae_model *vae, size_t n, uint64_t seed, double temperature, float *x, char err[VAE_ERROR_SIZE]) {
    if (n > VAE_MAX_COUNT) return fail(err, VAE_MSG_COUNT_LIMIT, "n", VAE_MAX_COUNT, n);
    float *z = malloc((n ? n : 1) * (size_t)vae->latent_dim * sizeof *z);
    if (!z) return fail(err, "out of memory for %zu latents", n);
    int rc = vae_latents(vae, n, seed, temperature, z, err) || vae_decode(vae, z, n, x, err) ? -1 : 0;
    free(z);
    return rc;
}

/* Images the caller passes: finite floats in [0, 1], as runtime/inputs.py's pixels. */
static int check_pixels(const float *x, size_t count, char *err) {
    float lo = x[0], hi = x[0];
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(x[i])) return fail(err, "x contains NaN or inf");
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    if (lo < 0 || hi > 1)
        return fail(err, "x has values in [%g, %g]; floats must lie in [0, 1] (or pass uint8 in [0, 255])", lo, hi);
    return 0;
}

/* mu, logvar [n, latent_dim] = encoder(x [n, C, H, W]): one run of a batch, both outputs checked (rule G3). */
static int encode_batch(vae_model *vae, const float *x, size_t n, float *mu, float *logvar, char *err) {
    int64_t x_shape[4] = {(int64_t)n, vae->shape[0], vae->shape[1], vae->shape[2]}, z_shape[2] = {(int64_t)n,
                                                                                                    vae->latent_dim};
    OrtValue *xv = NULL;
    ORT(vae->ort->CreateTensorWithDataAsOrtValue(vae->cpu, (void *)x, n * vae_image_size(vae) * sizeof(float),
                                                 x_shape, 4, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &xv), "onnxruntime");
    const char *in[1] = {vae->x_in_name}, *outs[2] = {"mu", "logvar"};
    float *dsts[2] = {mu, logvar};
    int rc = run_outputs(vae, vae->encoder, vae->encoder_path, "the encoder failed to run", in,
                         (const OrtValue *const *)&xv, 1, outs, 2, z_shape, 2, dsts, err);
    vae->ort->ReleaseValue(xv);
    return rc;
}

int vae_encode(vae_model *vae, const float *x, size_t n, float *mu, float *logvar, char err[VAE_ERROR_SIZE]) {
    if (!vae->encoder) return fail(err, "this model was loaded without its encoder; load it with options.encoder = 1");
    if (n == 0 || n > VAE_MAX_COUNT) return fail(err, "n must be from 1 to %d per call, got %zu", VAE_MAX_COUNT, n);
    if (check_pixels(x, n * vae_image_size(vae), err) != 0) return -1;
    size_t d = (size_t)vae->latent_dim;
    for (size_t i = 0; i < n; i += BATCH) {
        size_t m = n - i < BATCH ? n - i : BATCH;
        if (encode_batch(vae, x + i * vae_image_size(vae), m, mu + i * d, logvar + i * d, err) != 0) return -1;
    }
    return 0;
}

/* -- scores (issue 33): score.onnx, as runtime/prior.py's log_likelihood -------------------------------------- */

#define IMAGES_PER_SCORE 100  /* images per score.onnx run, as runtime/prior.py */
#define DECODES_PER_SCORE 4096 /* samples x images per run, as runtime/prior.py */

/* Whether input or output i of score.onnx is `name` float32 with these dims (-1: a symbolic axis). */
static int score_io(vae_model *vae, int output, size_t i, const char *name, const int64_t *want, int rank,
                    int *fits, char *err) {
    OrtAllocator *alloc;
    char *got;
    int64_t dims[8];
    ONNXTensorElementDataType type;
    ORT(vae->ort->GetAllocatorWithDefaultOptions(&alloc), "onnxruntime");
    ORT((output ? vae->ort->SessionGetOutputName : vae->ort->SessionGetInputName)(vae->score, i, alloc, &got),
        "onnxruntime");
    int count = io_info(vae, vae->score, output, i, &type, dims, err);
    *fits = count == rank && type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT && strcmp(got, name) == 0;
    for (int d = 0; *fits && d < rank; d++) *fits = want[d] < 0 ? dims[d] < 0 : dims[d] == want[d];
    alloc->Free(alloc, got);
    return count < 0 ? -1 : 0;
}

/* score.onnx's contract (rule G2), as runtime/graph.py's check_score: x [batch, C, H, W], eps [samples, batch,
   latent_dim] (in that order, as vae-export writes them) -> log_w [samples, batch], all float32. */
static int check_score(vae_model *vae, char *err) {
    size_t inputs, outputs;
    int fits = 0, ok = 1;
    const int64_t x[4] = {-1, vae->shape[0], vae->shape[1], vae->shape[2]}, e[3] = {-1, -1, vae->latent_dim};
    const int64_t w[2] = {-1, -1};
    ORT(vae->ort->SessionGetInputCount(vae->score, &inputs), "onnxruntime");
    ORT(vae->ort->SessionGetOutputCount(vae->score, &outputs), "onnxruntime");
    ok = inputs == 2 && outputs == 1;
    if (ok && (score_io(vae, 0, 0, "x", x, 4, &fits, err) || !(ok = fits))) ok = 0;
    if (ok && (score_io(vae, 0, 1, "eps", e, 3, &fits, err) || !(ok = fits))) ok = 0;
    if (ok && (score_io(vae, 1, 0, "log_w", w, 2, &fits, err) || !(ok = fits))) ok = 0;
    if (ok) return 0;
    const char *none[1] = {NULL};
    char got_in[512] = "", got_out[512] = "";
    for (size_t i = 0; i < inputs + outputs; i++)
        if ((i >= inputs ? describe(vae, vae->score, 1, i - inputs, none, got_out, sizeof got_out, err)
                         : describe(vae, vae->score, 0, i, none, got_in, sizeof got_in, err)) < 0)
            return -1;
    char want_in[128];
    snprintf(want_in, sizeof want_in, "x float32 [batch, %d, %d, %d], eps float32 [samples, batch, %d]", vae->shape[0],
             vae->shape[1], vae->shape[2], vae->latent_dim);
    return fail(err, VAE_MSG_NOT_DESCRIBED, vae->score_path, "score graph", inputs ? got_in : "nothing",
                outputs ? got_out : "nothing", want_in, "log_w float32 [samples, batch]");
}

/* score.onnx's session, made on first use through the checks every file gets (check_file, the closed list). */
static int open_score(vae_model *vae, char *err) {
    if (vae->score) return 0;
    if (!cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(vae->meta, "files"), "score"))
        return fail(err, "%s has no score.onnx (exported before vae-edge 0.2.0 wrote one); re-export it with "
                         "vae-export to score images",
                    vae->folder);
    if (open_session(vae, vae->folder, vae->meta, "score", vae->threads, &vae->score, vae->score_path, err) != 0)
        return -1;
    if (check_score(vae, err) == 0) return 0;
    vae->ort->ReleaseSession(vae->score);
    vae->score = NULL;
    return -1;
}

/* log w [m, nb] = score.onnx(x [nb, C, H, W], eps [m, nb, latent_dim]): one run, its output checked (rule G3). */
static int score_batch(vae_model *vae, const float *x, const float *eps, size_t nb, size_t m, float *log_w,
                       char *err) {
    int64_t x_shape[4] = {(int64_t)nb, vae->shape[0], vae->shape[1], vae->shape[2]};
    int64_t e_shape[3] = {(int64_t)m, (int64_t)nb, vae->latent_dim}, w_shape[2] = {(int64_t)m, (int64_t)nb};
    OrtValue *in[2] = {NULL, NULL};
    const char *names[2] = {"x", "eps"};
    OrtStatus *status = vae->ort->CreateTensorWithDataAsOrtValue(vae->cpu, (void *)x, nb * vae_image_size(vae) *
                                                                 sizeof(float), x_shape, 4,
                                                                 ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in[0]);
    if (!status)
        status = vae->ort->CreateTensorWithDataAsOrtValue(vae->cpu, (void *)eps, m * nb * vae->latent_dim *
                                                          sizeof(float), e_shape, 3,
                                                          ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in[1]);
    int rc = status ? ort_fail(vae->ort, status, err, "onnxruntime")
                    : run(vae, vae->score, vae->score_path, "score.onnx failed to run", names,
                          (const OrtValue *const *)in, 2, "log_w", w_shape, 2, log_w, err);
    for (int i = 0; i < 2; i++)
        if (in[i]) vae->ort->ReleaseValue(in[i]);
    return rc;
}

/* log(exp(a) + exp(b)), -inf included (numpy's logaddexp). */
static double logaddexp(double a, double b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    return (a > b ? a : b) + log1p(exp(-fabs(a - b)));
}

/* Images i .. i + nb - 1 of x (already binarized where the model is) scored into out: k samples in runs of m. */
static int score_images(vae_model *vae, const float *x, size_t n, size_t i, size_t nb, size_t k, uint64_t seed,
                        uint64_t start, const float *eps, double *out, float *e, float *log_w, char *err) {
    size_t d = (size_t)vae->latent_dim, chunk = DECODES_PER_SCORE / nb ? DECODES_PER_SCORE / nb : 1;
    for (size_t b = 0; b < nb; b++) out[b] = -INFINITY;
    for (size_t j = 0; j < k; j += chunk) {
        size_t m = k - j < chunk ? k - j : chunk;
        for (size_t b = 0; b < nb; b++)
            for (size_t s = 0; s < m; s++) { /* image i + b's sample j + s into e's [s, b] row */
                float *row = e + (s * nb + b) * d;
                if (eps) memcpy(row, eps + ((j + s) * n + i + b) * d, d * sizeof *row);
                else vae_gaussian_at(row, d, seed, ((start + i + b) * k + j + s) * d);
            }
        if (score_batch(vae, x, e, nb, m, log_w, err) != 0) return -1;
        for (size_t b = 0; b < nb; b++) {
            double top = -INFINITY, sum = 0;
            for (size_t s = 0; s < m; s++) top = log_w[s * nb + b] > top ? log_w[s * nb + b] : top;
            for (size_t s = 0; s < m; s++) sum += exp(log_w[s * nb + b] - top);
            out[b] = logaddexp(out[b], top + log(sum));
        }
    }
    for (size_t b = 0; b < nb; b++) out[b] = -(out[b] - log((double)k));
    return 0;
}

int vae_score(vae_model *vae, size_t n, const float *x, size_t k, uint64_t seed, uint64_t start, const float *eps,
              double *out_nats, char err[VAE_ERROR_SIZE]) {
    size_t d = (size_t)vae->latent_dim, pixels = vae_image_size(vae);
    if (n == 0 || n > VAE_MAX_COUNT) return fail(err, "n must be from 1 to %d per call, got %zu", VAE_MAX_COUNT, n);
    if (k == 0 || k > VAE_MAX_COUNT) return fail(err, "k must be from 1 to %d per call, got %zu", VAE_MAX_COUNT, k);
    if (!eps && seed >= (uint64_t)1 << 53)
        return fail(err, VAE_MSG_SEED, (unsigned long long)seed);
    if (!eps && start >= (uint64_t)1 << 53)
        return fail(err, "start must be an integer in [0, 2^53), got %llu", (unsigned long long)start);
    if (check_pixels(x, n * pixels, err) != 0) return -1;
    for (size_t i = 0; eps && i < k * n * d; i++)
        if (!isfinite(eps[i])) return fail(err, "eps contains NaN or inf");
    if (open_score(vae, err) != 0) return -1;
    /* a run holds m x nb <= DECODES_PER_SCORE samples (nb <= IMAGES_PER_SCORE images, m = DECODES_PER_SCORE / nb) */
    size_t nb_max = n < IMAGES_PER_SCORE ? n : IMAGES_PER_SCORE;
    float *xb = malloc(nb_max * pixels * sizeof *xb), *e = malloc(DECODES_PER_SCORE * d * sizeof *e);
    float *log_w = malloc(DECODES_PER_SCORE * sizeof *log_w);
    int rc = xb && e && log_w ? 0 : fail(err, "out of memory for %zu images", nb_max);
    for (size_t i = 0; !rc && i < n; i += IMAGES_PER_SCORE) {
        size_t nb = n - i < IMAGES_PER_SCORE ? n - i : IMAGES_PER_SCORE;
        for (size_t p = 0; p < nb * pixels; p++) /* a binarized model's pixels: >= 0.5 is 1 */
            xb[p] = vae->binarized ? (x[i * pixels + p] >= 0.5f ? 1.0f : 0.0f) : x[i * pixels + p];
        rc = score_images(vae, xb, n, i, nb, k, seed, start, eps, out_nats + i, e, log_w, err);
    }
    free(xb);
    free(e);
    free(log_w);
    return rc;
}

void vae_free(vae_model *vae) {
    if (!vae) return;
    if (vae->decoder) vae->ort->ReleaseSession(vae->decoder);
    if (vae->prior) vae->ort->ReleaseSession(vae->prior);
    if (vae->score) vae->ort->ReleaseSession(vae->score);
    if (vae->encoder) vae->ort->ReleaseSession(vae->encoder);
    free(vae->x_in_name);
    cJSON_Delete(vae->meta);
    free(vae->folder);
    if (vae->cpu) vae->ort->ReleaseMemoryInfo(vae->cpu);
    if (vae->env) vae->ort->ReleaseEnv(vae->env);
    free(vae->z_name);
    free(vae->x_name);
    free(vae);
}
