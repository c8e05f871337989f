/* A bounds-checked walk of an ONNX ModelProto's protobuf along fixed paths (model -> graph -> node -> attribute ->
 * tensor), refusing tensors stored outside the file, sparse tensors, operator domains other than the default one,
 * local functions and subgraphs (docs/format.md, rule G1). No recursion: a subgraph is refused, not entered, so
 * the depth is fixed. Every length is checked against the end of its message before it is used. */
#include "onnx_check.h"

#include "format_rules.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const unsigned char *at, *end;
} span;

typedef struct {
    uint32_t number, wire;
    uint64_t value; /* wire type 0 */
    span bytes;     /* wire type 2 */
} field;

enum { OK = 0, CORRUPT, EXTERNAL, SPARSE, DOMAIN, FUNCTIONS, SUBGRAPH };

/* a varint of at most 10 bytes; 0, or -1 if truncated or longer */
static int varint(span *s, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 10 && s->at < s->end; i++) {
        unsigned char b = *s->at++;
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* The next field of s: 1, 0 at the end, -1 if the protobuf does not parse (wire types 3 and 4 included). */
static int next(span *s, field *f) {
    uint64_t key, n;
    if (s->at >= s->end) return 0;
    if (varint(s, &key) || key >> 3 == 0 || key >> 3 > UINT32_MAX) return -1;
    f->number = (uint32_t)(key >> 3);
    f->wire = (uint32_t)(key & 7);
    size_t left;
    switch (f->wire) {
    case 0: return varint(s, &f->value) ? -1 : 1;
    case 1: n = 8; break;
    case 5: n = 4; break;
    case 2:
        if (varint(s, &n)) return -1;
        break;
    default: return -1;
    }
    left = (size_t)(s->end - s->at);
    if (n > left) return -1;
    f->bytes.at = s->at;
    f->bytes.end = s->at + n;
    s->at += n;
    return 1;
}

/* A field that must be a sub-message or a string (wire type 2): protobuf refuses another wire type there. */
#define LENGTH(f) ((f).wire == 2 ? OK : CORRUPT)

static int tensor(span s) { /* TensorProto */
    field f;
    int got;
    while ((got = next(&s, &f)) > 0) {
        if (f.number == 13) return EXTERNAL;                                   /* external_data */
        if (f.number == 14 && (f.wire != 0 || f.value == 1)) return f.wire ? CORRUPT : EXTERNAL; /* EXTERNAL */
    }
    return got ? CORRUPT : OK;
}

static int domain(span d, span *bad) { /* "" and "ai.onnx" only */
    size_t n = (size_t)(d.end - d.at);
    if (n == 0 || (n == 7 && memcmp(d.at, "ai.onnx", 7) == 0)) return OK;
    *bad = d;
    return DOMAIN;
}

static int attribute(span s) { /* AttributeProto */
    field f;
    int got, why = OK;
    while (!why && (got = next(&s, &f)) > 0) {
        if (f.number == 5 || f.number == 10) why = LENGTH(f) ? CORRUPT : tensor(f.bytes); /* t, tensors */
        else if (f.number == 6 || f.number == 11) why = SUBGRAPH;                          /* g, graphs */
        else if (f.number == 22 || f.number == 23) why = SPARSE;                           /* sparse_tensor(s) */
    }
    return why ? why : got ? CORRUPT : OK;
}

static int node(span s, span *bad) { /* NodeProto */
    field f;
    int got, why = OK;
    while (!why && (got = next(&s, &f)) > 0) {
        if (f.number == 5) why = LENGTH(f) ? CORRUPT : attribute(f.bytes);
        else if (f.number == 7) why = LENGTH(f) ? CORRUPT : domain(f.bytes, bad);
    }
    return why ? why : got ? CORRUPT : OK;
}

static int graph(span s, span *bad) { /* GraphProto */
    field f;
    int got, why = OK;
    while (!why && (got = next(&s, &f)) > 0) {
        if (f.number == 1) why = LENGTH(f) ? CORRUPT : node(f.bytes, bad);
        else if (f.number == 5) why = LENGTH(f) ? CORRUPT : tensor(f.bytes); /* initializer */
        else if (f.number == 15) why = SPARSE;                               /* sparse_initializer */
    }
    return why ? why : got ? CORRUPT : OK;
}

static int opset(span s, span *bad) { /* OperatorSetIdProto: domain = 1 */
    field f;
    int got, why = OK;
    while (!why && (got = next(&s, &f)) > 0)
        if (f.number == 1) why = LENGTH(f) ? CORRUPT : domain(f.bytes, bad);
    return why ? why : got ? CORRUPT : OK;
}

static int model(span s, span *bad) { /* ModelProto */
    field f;
    int got, why = OK;
    while (!why && (got = next(&s, &f)) > 0) {
        if (f.number == 7) why = LENGTH(f) ? CORRUPT : graph(f.bytes, bad);
        else if (f.number == 8) why = LENGTH(f) ? CORRUPT : opset(f.bytes, bad);
        else if (f.number == 25) why = FUNCTIONS;
    }
    return why ? why : got ? CORRUPT : OK;
}

int onnx_versions(const unsigned char *data, size_t len, long long *ir_version, long long *opset) {
    span s = {data, data + len}, bad;
    field f, g;
    int got;
    *ir_version = *opset = -1;
    while ((got = next(&s, &f)) > 0) {
        if (f.number == 1 && f.wire == 0) {
            *ir_version = (long long)f.value; /* past 2^63: negative, no version */
        } else if (f.number == 8 && f.wire == 2) { /* OperatorSetIdProto: domain = 1, version = 2 */
            span o = f.bytes;
            long long version = -1;
            int ours = 1;
            while (next(&o, &g) > 0) {
                if (g.number == 1 && g.wire == 2) ours = domain(g.bytes, &bad) == OK;
                else if (g.number == 2 && g.wire == 0) version = (long long)g.value;
            }
            if (ours && version >= 0) *opset = version;
        }
    }
    return got == 0 && *ir_version >= 0 && *opset >= 0 ? 0 : -1;
}

int onnx_check(const unsigned char *data, size_t len, const char *path, char *err, size_t size) {
    span s = {data, data + len}, bad = {NULL, NULL};
    char shown[81], what[128];
    size_t n;
    switch (model(s, &bad)) {
    case OK: return 0;
    case EXTERNAL: snprintf(what, sizeof what, VAE_MSG_G1_EXTERNAL); break;
    case SPARSE: snprintf(what, sizeof what, VAE_MSG_G1_SPARSE); break;
    case FUNCTIONS: snprintf(what, sizeof what, VAE_MSG_G1_FUNCTIONS); break;
    case SUBGRAPH: snprintf(what, sizeof what, VAE_MSG_G1_SUBGRAPH); break;
    case DOMAIN: /* shown in at most 80 printable characters: the name comes from the file */
        n = (size_t)(bad.end - bad.at) < sizeof shown - 1 ? (size_t)(bad.end - bad.at) : sizeof shown - 1;
        for (size_t i = 0; i < n; i++) shown[i] = bad.at[i] >= 0x20 && bad.at[i] < 0x7F ? (char)bad.at[i] : '?';
        shown[n] = '\0';
        snprintf(what, sizeof what, VAE_MSG_G1_DOMAIN, shown);
        break;
    default:
        snprintf(err, size, VAE_MSG_NOT_ONNX, path, "its protobuf does not parse");
        return -1;
    }
    snprintf(err, size, VAE_MSG_OUTSIDE_LIST, path, what);
    return -1;
}
