/* vae-sample in C: images from an exported VAE, written as .npy and as a PGM/PPM grid, through vae_edge.h. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vae_edge.h"

#define TEXT(x) STRING(x) /* a macro's value as a string literal */
#define STRING(x) #x
static const char USAGE[] =
    "usage: vae-sample [options]\n"
    "Sample images from an exported VAE (a vae-export folder) with onnxruntime's C API.\n\n"
    "  -m, --model DIR        export folder (default: " VAE_DEFAULT_FOLDER ")\n"
    "  -n, --n N              number of images, at most " TEXT(VAE_MAX_COUNT) " (default: 64)\n"
    "      --seed S           seed in [0, 2^53) of the noise that draws z: Python's and the browser's z too\n"
    "                         (default: 0)\n"
    "  -t, --temperature T    z = T * N(0, I); with a learned prior (format 2), prior.onnx(T * eps, u)\n"
    "                         (default: 1)\n"
    "      --z FILE.npy       decode these latents (float32 or float64, N x latent_dim) instead of drawing z\n"
    "  -o, --out FILE         image grid, .pgm (1 channel) or .ppm (3 channels) (default: samples.pgm or .ppm)\n"
    "      --npy FILE         also write the images as float32 .npy (N, C, H, W); - for standard output\n"
    "      --save-z FILE      also write the latents decoded as float32 .npy (N, latent_dim); - for standard output\n"
    "      --no-image         write no image grid (with --npy)\n"
    "      --nrow K           images per row of the grid (default: 8)\n"
    "      --precision P      fp32 or int8 (default: fp32)\n"
    "      --threads K        onnxruntime intra-op threads (default: onnxruntime decides)\n"
    "      --onnxruntime LIB  libonnxruntime.so to load (default: $VAE_EDGE_ONNXRUNTIME, else python3's\n"
    "                         onnxruntime package, else the system's)\n"
    "      --score FILE.npy   score these images (float32 or float64, N x C x H x W in [0, 1]) instead: each one's\n"
    "                         negative ELBO (--k 1) or negative IWAE bound in nats, float64 .npy (N,) to --npy\n"
    "      --k K              importance samples per image for --score (default: 1)\n"
    "      --eps FILE.npy     the noise for --score (K x N x latent_dim) instead of the seed's\n"
    "      --start I          with --score: the first image's index in a larger set scored in parts, which numbers\n"
    "                         the seed's noise as Python's VAE.score(start=) (default: 0)\n"
    "      --encode FILE.npy  encode these images (float32 or float64, N x C x H x W in [0, 1]) instead: mu as\n"
    "                         float32 .npy (N, latent_dim) to --npy, logvar to --logvar FILE\n"
    "      --encoder          load and check the encoder too, as a reader of the whole folder (--encode does)\n"
    "      --check            verify every file vae.json lists against its sha256, print the result, exit\n"
    "  -h, --help             this help\n";

static int die(const char *fmt, const char *a, const char *b) {
    fputs("vae-sample: ", stderr);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

/* An output path the user names: "-" (standard output) where allowed, or a path that is a regular file or nothing,
   in a folder that exists. Anything else (a folder, a device, a FIFO, a symlink) is never replaced. */
static int check_output(const char *path, int dash) {
    struct stat st;
    if (strcmp(path, "-") == 0 && dash) return 0;
    if (lstat(path, &st) == 0 ? !S_ISREG(st.st_mode) : errno != ENOENT)
        return die("cannot write %s: it exists and is not a regular file (a folder, device, FIFO or symlink); "
                   "refusing to replace it%s", path, "");
    char parent[4096];
    const char *slash = strrchr(path, '/');
    snprintf(parent, sizeof parent, "%.*s", slash ? (int)(slash - path) + (slash == path) : 1, slash ? path : ".");
    if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode))
        return die("cannot write %s: its folder %s does not exist", path, parent);
    return 0;
}

/* Write through a temporary file in the same folder, synced, then renamed into place: a failed or killed run leaves
   no partial file, and what the path held stays until the new file is whole. "-": standard output, unbuffered by
   any temporary file. */
static FILE *open_temp(const char *path, char *tmp, size_t size) {
    if (strcmp(path, "-") == 0) return stdout;
    snprintf(tmp, size, "%s.tmp-%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (fd >= 0 && !f) close(fd);
    return f;
}

static int close_temp(FILE *f, const char *tmp, const char *path, int ok) {
    if (f == stdout) {
        ok = fflush(f) == 0 && ok;
        return ok ? 0 : die("cannot write %s: %s", "standard output", strerror(errno ? errno : EIO));
    }
    errno = 0;
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && !ferror(f) && ok;
    ok = fclose(f) == 0 && ok;
    if (ok && check_output(path, 0) != 0) { /* replaced by something else since the start: leave it */
        remove(tmp);
        return 2;
    }
    if (ok && rename(tmp, path) == 0) return 0;
    int e = errno;
    remove(tmp);
    return die("cannot write %s: %s", path, strerror(e ? e : EIO));
}

/* A .npy of n rows, each of the dims in shape (ndim - 1 of them: 0 to 3), float32 (size 4) or float64 (size 8). */
static int write_npy(const char *path, const void *x, size_t size, size_t n, const int shape[3], int ndim) {
    char header[160], tmp[4200];
    size_t count = n;
    int len = snprintf(header, sizeof header, "{'descr': '<f%zu', 'fortran_order': False, 'shape': (%zu,", size, n);
    for (int i = 0; i < ndim - 1; i++) {
        len += snprintf(header + len, sizeof header - (size_t)len, "%s%d", i ? ", " : " ", shape[i]);
        count *= (size_t)shape[i];
    }
    len += snprintf(header + len, sizeof header - (size_t)len, "), }");
    int total = (10 + len + 1 + 63) / 64 * 64; /* magic, version, length, header, newline: 64-byte aligned */
    memset(header + len, ' ', (size_t)(total - 10 - len - 1));
    header[total - 10 - 1] = '\n';
    FILE *f = open_temp(path, tmp, sizeof tmp);
    if (!f) return die("cannot write %s: %s", path, strerror(errno));
    unsigned short hl = (unsigned short)(total - 10);
    unsigned char lenbytes[2] = {(unsigned char)(hl & 0xff), (unsigned char)(hl >> 8)};
    int ok = fwrite("\x93NUMPY\x01\x00", 1, 8, f) == 8 && fwrite(lenbytes, 1, 2, f) == 2 &&
             fwrite(header, 1, (size_t)(total - 10), f) == (size_t)(total - 10);
    ok = ok && fwrite(x, size, count, f) == count; /* little-endian hosts: x86-64 and ARM64 */
    return close_temp(f, tmp, path, ok);
}

/* A grid of images laid out as the Python runtime's make_grid (2 pixels of padding, floor(x * 255 + 0.5)). */
static int write_grid(const char *path, const float *x, size_t n, const int shape[3], int nrow) {
    const int pad = 2, c = shape[0], h = shape[1], w = shape[2];
    size_t cols = n < (size_t)nrow ? n : (size_t)nrow, rows = (n + cols - 1) / cols;
    size_t height = rows * (h + pad) + pad, width = cols * (w + pad) + pad;
    unsigned char *px = calloc(height * width * c, 1);
    if (!px) return die("out of memory for a grid of %s images%s", "these", "");
    for (size_t k = 0; k < n; k++)
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < h; y++)
                for (int xx = 0; xx < w; xx++) {
                    float v = x[((k * c + ch) * h + y) * w + xx] * 255.0f + 0.5f;
                    size_t row = k / cols * (h + pad) + pad + y, col = k % cols * (w + pad) + pad + xx;
                    px[(row * width + col) * c + ch] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
    char tmp[4200];
    FILE *f = open_temp(path, tmp, sizeof tmp);
    if (!f) {
        free(px);
        return die("cannot write %s: %s", path, strerror(errno));
    }
    int ok = fprintf(f, "P%c\n%zu %zu\n255\n", c == 1 ? '5' : '6', width, height) > 0 &&
             fwrite(px, 1, height * width * c, f) == height * width * c;
    free(px);
    return close_temp(f, tmp, path, ok);
}

/* An array from a .npy file: float32 or float64, C order, (N, want[0], ..., want[ndim - 2]); what names it. */
static float *read_npy(const char *path, const size_t *want, int ndim, const char *what, size_t *n) {
    FILE *f = fopen(path, "rb");
    unsigned char head[10];
    char header[4096], got[160], expected[160];
    if (!f) {
        die("cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t len = 0, dims[8], found = 0;
    int ok = fread(head, 1, 10, f) == 10 && memcmp(head, "\x93NUMPY", 6) == 0 && head[6] == 1 &&
             (len = head[8] | (size_t)head[9] << 8) < sizeof header && fread(header, 1, len, f) == len;
    header[ok ? len : 0] = '\0';
    int f8 = strstr(header, "'descr': '<f8'") != NULL, f4 = strstr(header, "'descr': '<f4'") != NULL;
    const char *shape = strstr(header, "'shape': (");
    for (const char *p = shape ? shape + 10 : NULL; p && found < 8;) { /* (a, b, ...): the dims written */
        char *end;
        unsigned long long d = strtoull(p, &end, 10);
        if (end == p) break;
        dims[found++] = (size_t)d;
        p = end + strspn(end, ", ");
    }
    ok = ok && (f4 || f8) && strstr(header, "'fortran_order': False") && shape && found == (size_t)ndim;
    if (!ok) {
        fclose(f);
        snprintf(expected, sizeof expected, "%d-D", ndim);
        die("%s is not a %s float32 or float64 .npy file (version 1.0, C order)", path, expected);
        return NULL;
    }
    size_t count = dims[0], size = f8 ? 8 : 4;
    int fits = dims[0] > 0;
    int at_got = snprintf(got, sizeof got, "(%zu", dims[0]), at_want = snprintf(expected, sizeof expected, "(N");
    for (int i = 1; i < ndim; i++) {
        fits = fits && dims[i] == want[i - 1];
        count *= dims[i] ? dims[i] : 1;
        at_got += snprintf(got + at_got, sizeof got - (size_t)at_got, ", %zu", dims[i]);
        at_want += snprintf(expected + at_want, sizeof expected - (size_t)at_want, ", %zu", want[i - 1]);
    }
    snprintf(got + at_got, sizeof got - (size_t)at_got, "); expected %s)", expected);
    if (!fits) {
        fclose(f);
        die("%s has shape %s", what, got);
        return NULL;
    }
    struct stat st; /* the header's row count held to the file's size before anything is allocated for it */
    long at = ftell(f);
    if (fstat(fileno(f), &st) != 0 || at < 0 || count / dims[0] == 0 ||
        dims[0] > ((size_t)st.st_size - (size_t)at) / (count / dims[0] * size)) {
        fclose(f);
        die("%s is truncated or unreadable%s", path, "");
        return NULL;
    }
    unsigned char *raw = malloc(count * size);
    float *z = malloc(count * sizeof *z);
    ok = raw && z && fread(raw, size, count, f) == count;
    fclose(f);
    for (size_t i = 0; ok && i < count; i++) {
        double d;
        float s;
        if (f8) memcpy(&d, raw + 8 * i, 8); else memcpy(&s, raw + 4 * i, 4), d = s;
        z[i] = (float)d;
    }
    free(raw);
    if (!ok) {
        free(z);
        die("%s is truncated or unreadable%s", path, "");
        return NULL;
    }
    *n = dims[0];
    return z;
}

static int parse_number(const char *text, double *out, const char *name) {
    char *end;
    errno = 0;
    *out = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(*out)) return die("%s must be a number, got '%s'", name, text);
    return 0;
}

static int parse_count(const char *text, double *out, const char *name, double lo, double hi) {
    if (parse_number(text, out, name)) return 2;
    if (*out != floor(*out) || *out < lo || *out > hi) {
        char range[64];
        snprintf(range, sizeof range, "an integer in [%.0f, %.0f], got %s", lo, hi, text);
        return die("%s must be %s", name, range);
    }
    return 0;
}

/* --encode: the images in path encoded into mu (at npy) and logvar (at logvar_path, when given). */
static int encode(vae_model *vae, const char *path, const char *npy, const char *logvar_path) {
    int shape[3], rc = 2, latent = vae_latent_dim(vae);
    vae_input_shape(vae, shape);
    const size_t x_want[3] = {(size_t)shape[0], (size_t)shape[1], (size_t)shape[2]};
    const int z_shape[3] = {latent, 1, 1};
    char what[4200], err[VAE_ERROR_SIZE];
    size_t n;
    snprintf(what, sizeof what, "the images in %s", path);
    float *x = read_npy(path, x_want, 4, what, &n);
    float *mu = x ? malloc(n * latent * sizeof *mu) : NULL, *logvar = x ? malloc(n * latent * sizeof *logvar) : NULL;
    if (x && (!mu || !logvar)) {
        die("out of memory for %s latents%s", "the", "");
    } else if (x && vae_encode(vae, x, n, mu, logvar, err)) {
        die("%s%s", err, "");
    } else if (x && !(rc = write_npy(npy, mu, 4, n, z_shape, 2)) && logvar_path) {
        rc = write_npy(logvar_path, logvar, 4, n, z_shape, 2);
    }
    if (!rc) fprintf(strcmp(npy, "-") == 0 ? stderr : stdout, "%zu images encoded -> %s\n", n, npy);
    free(x);
    free(mu);
    free(logvar);
    return rc;
}

/* --score: the images in path scored (k samples, the seed's noise or eps_path's) into a float64 .npy at npy. */
static int score(vae_model *vae, const char *path, double k, uint64_t seed, uint64_t start, const char *eps_path,
                 const char *npy) {
    int shape[3], rc = 2;
    vae_input_shape(vae, shape);
    const size_t x_want[3] = {(size_t)shape[0], (size_t)shape[1], (size_t)shape[2]};
    char what[4200], err[VAE_ERROR_SIZE];
    size_t n, rows = (size_t)k;
    snprintf(what, sizeof what, "the images in %s", path);
    float *x = read_npy(path, x_want, 4, what, &n), *eps = NULL;
    double *nats = x ? malloc(n * sizeof *nats) : NULL;
    if (x && eps_path) {
        const size_t e_want[2] = {n, (size_t)vae_latent_dim(vae)};
        snprintf(what, sizeof what, "eps in %s", eps_path);
        eps = read_npy(eps_path, e_want, 3, what, &rows);
    }
    if (x && nats && (!eps_path || eps)) {
        if (vae_score(vae, n, x, rows, seed, start, eps, nats, err)) die("%s%s", err, "");
        else if (!(rc = write_npy(npy, nats, 8, n, shape, 1)))
            fprintf(strcmp(npy, "-") == 0 ? stderr : stdout, "%zu scores (k = %zu) -> %s\n", n, rows, npy);
    } else if (x && !nats) {
        die("out of memory for %s scores%s", "the", "");
    }
    free(x);
    free(eps);
    free(nats);
    return rc;
}

int main(int argc, char **argv) {
    const char *model = VAE_DEFAULT_FOLDER, *out = NULL, *npy = NULL, *zfile = NULL, *save_z = NULL, *score_file = NULL;
    const char *eps_file = NULL, *encode_file = NULL, *logvar = NULL;
    double n = 64, seed = 0, temperature = 1, nrow = 8, threads = 0, k = 1, start = 0;
    int check = 0, no_image = 0;
    vae_options options = {0};
    enum { SEED = 256, Z, SAVE_Z, NPY, NO_IMAGE, NROW, PRECISION, THREADS, ONNXRUNTIME, CHECK, SCORE, K, EPS, START, ENCODE, ENCODER, LOGVAR };
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'}, {"n", required_argument, 0, 'n'},
        {"seed", required_argument, 0, SEED}, {"temperature", required_argument, 0, 't'},
        {"z", required_argument, 0, Z}, {"save-z", required_argument, 0, SAVE_Z}, {"out", required_argument, 0, 'o'}, {"npy", required_argument, 0, NPY},
        {"no-image", no_argument, 0, NO_IMAGE}, {"nrow", required_argument, 0, NROW},
        {"precision", required_argument, 0, PRECISION}, {"threads", required_argument, 0, THREADS},
        {"onnxruntime", required_argument, 0, ONNXRUNTIME}, {"check", no_argument, 0, CHECK},
        {"encode", required_argument, 0, ENCODE}, {"encoder", no_argument, 0, ENCODER},
        {"logvar", required_argument, 0, LOGVAR}, {"score", required_argument, 0, SCORE}, {"k", required_argument, 0, K}, {"eps", required_argument, 0, EPS},
        {"start", required_argument, 0, START},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    opterr = 0;
    for (int opt; (opt = getopt_long(argc, argv, ":m:n:t:o:h", longs, NULL)) != -1;) {
        int bad = 0;
        switch (opt) {
        case 'm': model = optarg; break;
        case 'n':
            bad = parse_count(optarg, &n, "--n", 1, 1e18);
            if (!bad && n > VAE_MAX_COUNT) bad = die("--n must be at most %s per call, got %s", TEXT(VAE_MAX_COUNT), optarg);
            break;
        case SEED: bad = parse_count(optarg, &seed, "--seed", 0, 9007199254740991.0); break;
        case 't':
            bad = parse_number(optarg, &temperature, "--temperature");
            if (!bad && temperature < 0) bad = die("--temperature must be >= 0, got %s%s", optarg, "");
            break;
        case Z: zfile = optarg; break;
        case SAVE_Z: save_z = optarg; break;
        case 'o': out = optarg; break;
        case NPY: npy = optarg; break;
        case NO_IMAGE: no_image = 1; break;
        case NROW: bad = parse_count(optarg, &nrow, "--nrow", 1, 1e6); break;
        case PRECISION: options.precision = optarg; break;
        case THREADS: bad = parse_count(optarg, &threads, "--threads", 0, VAE_MAX_THREADS); break;
        case ONNXRUNTIME: options.onnxruntime_path = optarg; break;
        case CHECK: check = 1; break;
        case SCORE: score_file = optarg; break;
        case K: bad = parse_count(optarg, &k, "--k", 1, VAE_MAX_COUNT); break;
        case EPS: eps_file = optarg; break;
        case START: bad = parse_count(optarg, &start, "--start", 0, 9007199254740991.0); break;
        case ENCODE: encode_file = optarg; options.encoder = 1; break;
        case ENCODER: options.encoder = 1; break;
        case LOGVAR: logvar = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        case ':': return die("option %s needs a value (see --help)%s", argv[optind - 1], "");
        default: return die("unknown option %s (see --help)%s", argv[optind - 1], "");
        }
        if (bad) return 2;
    }
    if (optind < argc) return die("unexpected argument '%s' (see --help)%s", argv[optind], "");
    if (npy && save_z && strcmp(npy, "-") == 0 && strcmp(save_z, "-") == 0)
        return die("--npy and --save-z cannot both write to standard output%s%s", "", "");
    if ((npy && check_output(npy, 1)) || (save_z && check_output(save_z, 1)) ||
        (out && !no_image && check_output(out, 0)))
        return 2; /* before anything is loaded or drawn */
    char err[VAE_ERROR_SIZE];
    if (check) {
        int bad = vae_check(model, err);
        if (bad != 0) return die("%s%s", err, "");
        printf("%s: every file matches its sha256 in vae.json\n", model);
        return 0;
    }
    if (score_file && !npy) return die("--score writes its scores to --npy FILE (or - for standard output)%s%s", "", "");
    if (encode_file && !npy) return die("--encode writes mu to --npy FILE (or - for standard output)%s%s", "", "");
    if (logvar && check_output(logvar, 0)) return 2;
    options.threads = (int)threads;
    vae_model *vae = vae_load(model, &options, err);
    if (!vae) return die("%s%s", err, "");
    if (encode_file) {
        int rc = encode(vae, encode_file, npy, logvar);
        vae_free(vae);
        return rc;
    }
    if (score_file) {
        int rc = score(vae, score_file, k, (uint64_t)seed, (uint64_t)start, eps_file, npy);
        vae_free(vae);
        return rc;
    }
    int shape[3], rc = 2;
    vae_input_shape(vae, shape);
    if (!no_image && shape[0] != 1 && shape[0] != 3) {
        vae_free(vae);
        return die("images of %s channels have no PGM/PPM grid: pass --no-image with --npy%s", "other than 1 or 3", "");
    }
    const char *suffix = out ? strrchr(out, '.') : NULL, *want = shape[0] == 1 ? ".pgm" : ".ppm";
    if (!no_image && out && (!suffix || strcmp(suffix, want) != 0)) {
        vae_free(vae);
        return die("--out %s: this model's grid is written as %s (or pass --no-image)", out, want);
    }
    size_t count = (size_t)n;
    const int latent = vae_latent_dim(vae), z_shape[3] = {latent, 1, 1};
    const size_t z_want[1] = {(size_t)latent};
    char z_what[4200];
    snprintf(z_what, sizeof z_what, "z in %s", zfile ? zfile : "");
    float *z = zfile ? read_npy(zfile, z_want, 2, z_what, &count) : malloc(count * latent * sizeof *z), *x = NULL;
    if (!z) {
        if (!zfile) die("out of memory for %s latents%s", "the", "");
    } else if (!zfile && vae_latents(vae, count, (uint64_t)seed, temperature, z, err)) {
        die("%s%s", err, "");
    } else if (!(x = malloc(count * vae_image_size(vae) * sizeof *x))) {
        die("out of memory for %s images%s", "the", "");
    } else if (vae_decode(vae, z, count, x, err)) {
        die("%s%s", err, "");
    } else {
        const char *grid = out ? out : shape[0] == 1 ? "samples.pgm" : "samples.ppm";
        int piped = (npy && strcmp(npy, "-") == 0) || (save_z && strcmp(save_z, "-") == 0);
        rc = !no_image && !out ? check_output(grid, 0) : 0; /* the default grid, named only now */
        if (!rc && save_z) rc = write_npy(save_z, z, 4, count, z_shape, 2);
        if (!rc && npy) rc = write_npy(npy, x, 4, count, shape, 4);
        if (!rc && !no_image) rc = write_grid(grid, x, count, shape, (int)nrow);
        if (!rc) /* not on standard output when that carries a .npy */
            fprintf(piped ? stderr : stdout, "%zu images (%d x %d x %d) -> %s%s%s\n", count, shape[0], shape[1],
                    shape[2], no_image ? "" : grid, npy && !no_image ? ", " : "", npy ? npy : "");
    }
    free(x);
    free(z);
    vae_free(vae);
    return rc;
}
