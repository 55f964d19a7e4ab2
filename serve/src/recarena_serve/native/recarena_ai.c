/* recarena_ai: a Redis/Valkey module that speaks RedisAI's command protocol (tensors, ONNX
 * models, model execution) so that the unmodified smartredis client can use a current ONNX
 * Runtime. RedisAI itself is unmaintained and pins ONNX Runtime 1.14.
 *
 * Design, in short:
 * - Tensors and models are module data types (RDB save/load, AOF rewrite). Values are
 *   immutable once stored and reference counted, so a worker thread can run a model on
 *   input tensors while the main thread overwrites or deletes their keys.
 * - AI.MODELEXECUTE blocks the calling client, queues a request and returns; a worker pool
 *   runs ONNX Runtime off the main thread and the reply callback (main thread again) writes
 *   the output tensors into the keyspace. Requests for a model stored with BATCHSIZE that
 *   wait in the queue together are run as one batch.
 * - ONNX Runtime is dlopen()ed from the onnxruntime wheel's libonnxruntime.so.1.*; its API
 *   table is verified at load by running a built-in model, and unverified versions are
 *   refused.
 *
 * Module arguments (name value pairs): ORT_LIB path, THREADS_PER_QUEUE n,
 * INTRA_OP_PARALLELISM n, INTER_OP_PARALLELISM n, MODEL_CHUNK_SIZE bytes,
 * MAX_TENSOR_BYTES bytes, MAX_MODEL_BYTES bytes, ORT_ALLOW_UNVERIFIED 0|1, ALLOW_SPINNING 0|1. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "selftest_model.h"

#define MODULE_NAME "ai"
#define MODULE_VERSION 10000 /* 1.0.0 */
#define ENC_VER 1

#define RM_DEFINE(ret, name, args) ret(*RM_##name) args = NULL;
RM_API(RM_DEFINE)
#define ORT_DEFINE(slot, ret, name, args) ret(*ORT_##name) args = NULL;
ORT_API(ORT_DEFINE)

/* ONNX Runtime versions whose API table this module has been run against (slot order and
 * signatures checked, test suite passed). Others are refused unless ORT_ALLOW_UNVERIFIED 1. */
/* The range is one constant, recarena_serve.db.VERIFIED_ORT, passed in by the build (the same
 * constant pins onnxruntime in serve/pyproject.toml; a test checks the two agree). */
#if !defined(ORT_VERIFIED_MIN) || !defined(ORT_VERIFIED_MAX)
#error "build with -DORT_VERIFIED_MIN=<minor> -DORT_VERIFIED_MAX=<minor> (recarena_serve.db.build_module does)"
#endif
#define ORT_API_VERSION_REQUESTED 20 /* any table >= 20 has every slot used here */

static RedisModuleType *TensorType, *ModelType;
static OrtEnv *ort_env;
static OrtMemoryInfo *ort_cpu;
static char ort_version[64] = "";

static struct {
    long long threads, intra, inter, chunk, max_tensor, max_model, allow_unverified;
    char backends_path[1024];
    /* ORT's pool threads spin between runs by default; on a small host they take the cores
     * the server and its clients need, and the tail latency pays (off by default here) */
    long long allow_spinning;
} cfg = {2, 1, 1, 511LL * 1024 * 1024, 1LL << 30, 1LL << 30, 0, "", 0};

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s);
    char *d = RM_Alloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

/* an error message allocated with RM_Alloc, for replies built off the main thread */
static char *errf(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return xstrdup(buf);
}

static int reply_errf(RedisModuleCtx *ctx, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return RM_ReplyWithError(ctx, buf);
}

static int arg_is(RedisModuleString *s, const char *word) {
    size_t n;
    const char *p = RM_StringPtrLen(s, &n);
    return n == strlen(word) && strncasecmp(p, word, n) == 0;
}

/* a printable, bounded copy of an argument for error messages */
static const char *shown(RedisModuleString *s, char *buf, size_t cap) {
    size_t n;
    const char *p = RM_StringPtrLen(s, &n);
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < cap; i++) buf[k++] = (p[i] >= 32 && p[i] < 127) ? p[i] : '?';
    if (n > k) { buf[k++] = '.'; buf[k++] = '.'; buf[k++] = '.'; }
    buf[k] = 0;
    return buf;
}

/* ================================================================== tensors */
typedef struct {
    const char *name;
    size_t size;
    int onnx;
} DType;

enum { DT_FLOAT, DT_DOUBLE, DT_INT8, DT_INT16, DT_INT32, DT_INT64, DT_UINT8, DT_UINT16, DT_BOOL, DT_N };
static const DType DTYPES[DT_N] = {
    {"FLOAT", 4, ONNX_FLOAT}, {"DOUBLE", 8, ONNX_DOUBLE}, {"INT8", 1, ONNX_INT8},   {"INT16", 2, ONNX_INT16},
    {"INT32", 4, ONNX_INT32}, {"INT64", 8, ONNX_INT64},   {"UINT8", 1, ONNX_UINT8}, {"UINT16", 2, ONNX_UINT16},
    {"BOOL", 1, ONNX_BOOL},
};

static int dtype_from_onnx(int onnx) {
    for (int i = 0; i < DT_N; i++)
        if (DTYPES[i].onnx == onnx) return i;
    return -1;
}

typedef struct Tensor {
    atomic_int refs;
    int dtype;
    int ndims;
    int64_t *dims;
    size_t nbytes;
    char *data;
    struct Tensor *parent; /* a view's tensor: data points into it, and it is kept alive */
} Tensor;

static Tensor *tensor_new(int dtype, int ndims, const int64_t *dims, size_t nbytes) {
    Tensor *t = RM_Calloc(1, sizeof *t);
    atomic_init(&t->refs, 1);
    t->dtype = dtype;
    t->ndims = ndims;
    t->dims = RM_Alloc(sizeof(int64_t) * (ndims ? ndims : 1));
    if (ndims) memcpy(t->dims, dims, sizeof(int64_t) * ndims);
    t->nbytes = nbytes;
    t->data = RM_Calloc(1, nbytes ? nbytes : 1);
    return t;
}

static Tensor *tensor_ref(Tensor *t) {
    atomic_fetch_add(&t->refs, 1);
    return t;
}

static void tensor_unref(Tensor *t) {
    if (t && atomic_fetch_sub(&t->refs, 1) == 1) {
        RM_Free(t->dims);
        if (t->parent) tensor_unref(t->parent);
        else RM_Free(t->data);
        RM_Free(t);
    }
}

static size_t tensor_count(const Tensor *t) { return t->nbytes / DTYPES[t->dtype].size; }

/* ================================================================== models */
typedef struct {
    atomic_int refs;
    char *device, *tag;
    long long batchsize, minbatchsize, minbatchtimeout;
    char *blob;
    size_t bloblen;
    OrtSession *session;
    size_t ninputs, noutputs;
    char **inputs, **outputs;
    pthread_mutex_t stats_lock;
    long long duration_us, samples, calls, errors;
    int gathering; /* under q_lock: a worker is collecting a batch for this model */
} Model;

static Model *model_ref(Model *m) {
    atomic_fetch_add(&m->refs, 1);
    return m;
}

static void model_unref(Model *m) {
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1) return;
    if (m->session) ORT_ReleaseSession(m->session);
    for (size_t i = 0; i < m->ninputs; i++) RM_Free(m->inputs[i]);
    for (size_t i = 0; i < m->noutputs; i++) RM_Free(m->outputs[i]);
    RM_Free(m->inputs);
    RM_Free(m->outputs);
    RM_Free(m->device);
    RM_Free(m->tag);
    RM_Free(m->blob);
    pthread_mutex_destroy(&m->stats_lock);
    RM_Free(m);
}

/* takes an ORT status; returns an RM_Alloc'd message (NULL on success) */
static char *ort_err(OrtStatus *st, const char *what) {
    if (!st) return NULL;
    char *e = errf("ERR %s: %s", what, ORT_GetErrorMessage(st));
    ORT_ReleaseStatus(st);
    return e;
}

static char *session_create(const char *blob, size_t len, OrtSession **out) {
    OrtSessionOptions *opt = NULL;
    char *e = ort_err(ORT_CreateSessionOptions(&opt), "onnxruntime session options");
    if (e) return e;
    if (!e) e = ort_err(ORT_SetIntraOpNumThreads(opt, (int)cfg.intra), "SetIntraOpNumThreads");
    if (!e) e = ort_err(ORT_SetInterOpNumThreads(opt, (int)cfg.inter), "SetInterOpNumThreads");
    const char *spin = cfg.allow_spinning ? "1" : "0";
    if (!e) e = ort_err(ORT_AddSessionConfigEntry(opt, "session.intra_op.allow_spinning", spin), "AddSessionConfigEntry");
    if (!e) e = ort_err(ORT_AddSessionConfigEntry(opt, "session.inter_op.allow_spinning", spin), "AddSessionConfigEntry");
    if (!e) e = ort_err(ORT_CreateSessionFromArray(ort_env, blob, len, opt, out), "could not load the ONNX model");
    ORT_ReleaseSessionOptions(opt);
    return e;
}

/* Builds a model around a copy of blob. On failure returns NULL and sets *err. */
static Model *model_create(const char *device, const char *tag, long long bs, long long mbs, long long mbt,
                           char *blob, size_t len, char **err) {
    Model *m = RM_Calloc(1, sizeof *m);
    atomic_init(&m->refs, 1);
    pthread_mutex_init(&m->stats_lock, NULL);
    m->device = xstrdup(device);
    m->tag = xstrdup(tag);
    m->batchsize = bs;
    m->minbatchsize = mbs;
    m->minbatchtimeout = mbt;
    m->blob = blob;
    m->bloblen = len;
    *err = session_create(blob, len, &m->session);
    OrtAllocator *alloc = NULL;
    if (!*err) *err = ort_err(ORT_GetAllocatorWithDefaultOptions(&alloc), "allocator");
    if (!*err) *err = ort_err(ORT_SessionGetInputCount(m->session, &m->ninputs), "input count");
    if (!*err) *err = ort_err(ORT_SessionGetOutputCount(m->session, &m->noutputs), "output count");
    if (!*err) {
        m->inputs = RM_Calloc(m->ninputs ? m->ninputs : 1, sizeof(char *));
        m->outputs = RM_Calloc(m->noutputs ? m->noutputs : 1, sizeof(char *));
        for (size_t i = 0; !*err && i < m->ninputs + m->noutputs; i++) {
            char *name = NULL;
            int in = i < m->ninputs;
            size_t j = in ? i : i - m->ninputs;
            *err = ort_err(in ? ORT_SessionGetInputName(m->session, j, alloc, &name)
                              : ORT_SessionGetOutputName(m->session, j, alloc, &name),
                           "node name");
            if (!*err) {
                (in ? m->inputs : m->outputs)[j] = xstrdup(name);
                ORT_AllocatorFree(alloc, name);
            }
        }
    }
    if (*err) {
        if (!m->inputs) m->ninputs = 0;
        if (!m->outputs) m->noutputs = 0;
        model_unref(m);
        return NULL;
    }
    return m;
}

/* ================================================================== execution */
typedef struct Req {
    struct Req *next;
    Model *model;
    Tensor **in;
    size_t nin;
    char **outkeys; /* key names may hold NUL bytes (smartredis' cluster hash tags do) */
    size_t *outlens;
    size_t nout;
    Tensor **out;
    char *err;
    int timedout;
    long long timeout_ms;
    double enqueued_us;
    int reply_outputs; /* AI._MODELEXECUTE_REPLY: outputs go to the caller, never the keyspace */
    RedisModuleBlockedClient *bc;
} Req;

static void req_free(Req *r) {
    if (!r) return;
    for (size_t i = 0; i < r->nin; i++) tensor_unref(r->in[i]);
    for (size_t i = 0; i < r->nout; i++) {
        if (r->out) tensor_unref(r->out[i]);
        RM_Free(r->outkeys[i]);
    }
    RM_Free(r->in);
    RM_Free(r->out);
    RM_Free(r->outkeys);
    RM_Free(r->outlens);
    RM_Free(r->err);
    model_unref(r->model);
    RM_Free(r);
}

static int64_t dim0(const Tensor *t) { return t->ndims ? t->dims[0] : 1; }

/* can b's inputs be stacked under a's along dimension 0? */
static int batch_compatible(const Req *a, const Req *b) {
    if (a->model != b->model || a->nin != b->nin) return 0;
    for (size_t i = 0; i < a->nin; i++) {
        const Tensor *x = a->in[i], *y = b->in[i];
        if (x->dtype != y->dtype || x->ndims != y->ndims || x->ndims == 0) return 0;
        if (memcmp(x->dims + 1, y->dims + 1, sizeof(int64_t) * (x->ndims - 1))) return 0;
        if (dim0(y) != dim0(b->in[0])) return 0; /* every input of a request shares its batch size */
    }
    return 1;
}

/* Runs reqs[0..n) (same model, stacked along dim 0 when n > 1); fills each request's out or err. */
static void run_batch(Req **reqs, size_t n) {
    Model *m = reqs[0]->model;
    size_t nin = m->ninputs, nout = m->noutputs;
    OrtValue **vin = RM_Calloc(nin ? nin : 1, sizeof(OrtValue *));
    OrtValue **vout = RM_Calloc(nout ? nout : 1, sizeof(OrtValue *));
    char **stacked = RM_Calloc(nin ? nin : 1, sizeof(char *));
    int64_t *sizes = RM_Alloc(sizeof(int64_t) * n);
    int64_t total = 0;
    char *err = NULL;
    for (size_t r = 0; r < n; r++) total += (sizes[r] = dim0(reqs[r]->in[0]));

    for (size_t i = 0; !err && i < nin; i++) {
        Tensor *t = reqs[0]->in[i];
        char *data = t->data;
        size_t nbytes = t->nbytes;
        int64_t dims[64];
        memcpy(dims, t->dims, sizeof(int64_t) * t->ndims);
        if (n > 1) {
            nbytes = 0;
            for (size_t r = 0; r < n; r++) nbytes += reqs[r]->in[i]->nbytes;
            data = stacked[i] = RM_Alloc(nbytes ? nbytes : 1);
            size_t off = 0;
            for (size_t r = 0; r < n; r++) {
                memcpy(data + off, reqs[r]->in[i]->data, reqs[r]->in[i]->nbytes);
                off += reqs[r]->in[i]->nbytes;
            }
            dims[0] = total;
        }
        err = ort_err(ORT_CreateTensorWithDataAsOrtValue(ort_cpu, data, nbytes, dims, t->ndims,
                                                         DTYPES[t->dtype].onnx, &vin[i]),
                      "input tensor");
    }
    double t0 = now_us();
    if (!err)
        err = ort_err(ORT_Run(m->session, NULL, (const char *const *)m->inputs, (const OrtValue *const *)vin, nin,
                              (const char *const *)m->outputs, nout, vout),
                      "model execution failed");
    double elapsed = now_us() - t0;

    for (size_t r = 0; r < n; r++) reqs[r]->out = RM_Calloc(nout ? nout : 1, sizeof(Tensor *));
    for (size_t o = 0; !err && o < nout; o++) {
        OrtTensorTypeAndShapeInfo *info = NULL;
        int et = 0;
        size_t nd = 0;
        int64_t dims[64];
        void *data = NULL;
        err = ort_err(ORT_GetTensorTypeAndShape(vout[o], &info), "output shape");
        if (!err) err = ort_err(ORT_GetTensorElementType(info, &et), "output type");
        if (!err) err = ort_err(ORT_GetDimensionsCount(info, &nd), "output rank");
        if (!err && nd > 64) err = errf("ERR output '%s' has rank %zu (at most 64 supported)", m->outputs[o], nd);
        if (!err) err = ort_err(ORT_GetDimensions(info, dims, nd), "output dims");
        if (info) ORT_ReleaseTensorTypeAndShapeInfo(info);
        if (!err) err = ort_err(ORT_GetTensorMutableData(vout[o], &data), "output data");
        int dt = err ? -1 : dtype_from_onnx(et);
        if (!err && dt < 0)
            err = errf("ERR output '%s' has ONNX element type %d, which has no RedisAI tensor type", m->outputs[o], et);
        if (err) break;
        size_t count = 1;
        for (size_t d = 0; d < nd; d++) count *= (size_t)dims[d];
        size_t esz = DTYPES[dt].size;
        if (n == 1) {
            reqs[0]->out[o] = tensor_new(dt, (int)nd, dims, count * esz);
            memcpy(reqs[0]->out[o]->data, data, count * esz);
        } else if (nd == 0 || dims[0] != total) {
            err = errf("ERR batched run: output '%s' does not have the batch dimension %lld first", m->outputs[o],
                       (long long)total);
        } else {
            size_t row = total ? count / (size_t)total * esz : 0, off = 0;
            for (size_t r = 0; r < n; r++) {
                dims[0] = sizes[r];
                reqs[r]->out[o] = tensor_new(dt, (int)nd, dims, row * (size_t)sizes[r]);
                memcpy(reqs[r]->out[o]->data, (char *)data + off, row * (size_t)sizes[r]);
                off += row * (size_t)sizes[r];
            }
        }
    }
    for (size_t i = 0; i < nin; i++) {
        if (vin[i]) ORT_ReleaseValue(vin[i]);
        RM_Free(stacked[i]);
    }
    for (size_t o = 0; o < nout; o++)
        if (vout[o]) ORT_ReleaseValue(vout[o]);
    pthread_mutex_lock(&m->stats_lock);
    m->duration_us += (long long)elapsed;
    m->samples += total;
    m->calls += (long long)n;
    if (err) m->errors += (long long)n;
    pthread_mutex_unlock(&m->stats_lock);
    for (size_t r = 0; r < n; r++) {
        if (err) {
            for (size_t o = 0; o < nout; o++) tensor_unref(reqs[r]->out[o]), reqs[r]->out[o] = NULL;
            reqs[r]->err = xstrdup(err);
        }
    }
    RM_Free(err);
    RM_Free(vin);
    RM_Free(vout);
    RM_Free(stacked);
    RM_Free(sizes);
}

/* ---- the queue and its workers */
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static Req *q_head, *q_tail;
static long long q_len, runs_total, batched_total;

static void q_push(Req *r) {
    pthread_mutex_lock(&q_lock);
    r->next = NULL;
    if (q_tail) q_tail->next = r;
    else q_head = r;
    q_tail = r;
    q_len++;
    pthread_cond_broadcast(&q_cond);
    pthread_mutex_unlock(&q_lock);
}

/* with q_lock held: move compatible requests from the queue into batch while they fit */
static void q_gather(Req **batch, size_t *n, size_t cap, int64_t *total, long long limit) {
    Req *prev = NULL, *cur = q_head;
    while (cur && *n < cap) {
        Req *next = cur->next;
        if (batch_compatible(batch[0], cur) && *total + dim0(cur->in[0]) <= limit) {
            if (prev) prev->next = next;
            else q_head = next;
            if (q_tail == cur) q_tail = prev;
            q_len--;
            batch[(*n)++] = cur;
            *total += dim0(cur->in[0]);
        } else {
            prev = cur;
        }
        cur = next;
    }
}

#define MAX_BATCH_REQS 1024
static void *worker(void *arg) {
    (void)arg;
    Req **batch = malloc(sizeof(Req *) * MAX_BATCH_REQS);
    for (;;) {
        pthread_mutex_lock(&q_lock);
        /* the first request whose model is not being gathered by another worker: those stay
         * queued for that worker to collect into its batch */
        Req *r, *prev;
        for (;;) {
            prev = NULL;
            for (r = q_head; r && r->model->gathering; prev = r, r = r->next) {
            }
            if (r) break;
            pthread_cond_wait(&q_cond, &q_lock);
        }
        if (prev) prev->next = r->next;
        else q_head = r->next;
        if (q_tail == r) q_tail = prev;
        q_len--;
        size_t n = 1;
        batch[0] = r;
        Model *m = r->model;
        double start = now_us();
        if (r->timeout_ms > 0 && (start - r->enqueued_us) / 1000.0 > r->timeout_ms) {
            r->timedout = 1;
            pthread_mutex_unlock(&q_lock);
            RM_UnblockClient(r->bc, r);
            continue;
        }
        if (m->batchsize > 0 && r->nin > 0 && batch_compatible(r, r)) {
            int64_t total = dim0(r->in[0]);
            q_gather(batch, &n, MAX_BATCH_REQS, &total, m->batchsize);
            /* MINBATCHSIZE: wait for more requests, up to MINBATCHTIMEOUT ms (forever if 0) */
            m->gathering = 1;
            while (m->minbatchsize > 0 && total < m->minbatchsize) {
                if (m->minbatchtimeout > 0) {
                    double left_ms = m->minbatchtimeout - (now_us() - start) / 1000.0;
                    if (left_ms <= 0) break;
                    struct timespec ts;
                    clock_gettime(CLOCK_REALTIME, &ts);
                    long long ns = ts.tv_nsec + (long long)(left_ms * 1e6);
                    ts.tv_sec += ns / 1000000000LL;
                    ts.tv_nsec = ns % 1000000000LL;
                    pthread_cond_timedwait(&q_cond, &q_lock, &ts);
                } else {
                    pthread_cond_wait(&q_cond, &q_lock);
                }
                q_gather(batch, &n, MAX_BATCH_REQS, &total, m->batchsize);
            }
            m->gathering = 0;
            pthread_cond_broadcast(&q_cond); /* requests left for this model are free to take */
        }
        runs_total++;
        if (n > 1) batched_total += (long long)n;
        pthread_mutex_unlock(&q_lock);
        run_batch(batch, n);
        for (size_t i = 0; i < n; i++) RM_UnblockClient(batch[i]->bc, batch[i]);
    }
    return NULL;
}

/* ================================================================== data type callbacks */
static void tensor_free_cb(void *v) { tensor_unref(v); }
static void model_free_cb(void *v) { model_unref(v); }

static size_t tensor_mem_cb(const void *v) {
    const Tensor *t = v;
    return sizeof *t + t->nbytes + sizeof(int64_t) * t->ndims;
}

static size_t model_mem_cb(const void *v) {
    const Model *m = v;
    return sizeof *m + m->bloblen;
}

static void tensor_save_cb(RedisModuleIO *io, void *v) {
    Tensor *t = v;
    RM_SaveUnsigned(io, (uint64_t)t->dtype);
    RM_SaveUnsigned(io, (uint64_t)t->ndims);
    for (int i = 0; i < t->ndims; i++) RM_SaveUnsigned(io, (uint64_t)t->dims[i]);
    RM_SaveStringBuffer(io, t->data, t->nbytes);
}

static void *tensor_load_cb(RedisModuleIO *io, int encver) {
    if (encver != ENC_VER) return NULL;
    int dtype = (int)RM_LoadUnsigned(io);
    int ndims = (int)RM_LoadUnsigned(io);
    if (dtype < 0 || dtype >= DT_N || ndims < 0 || ndims > 64) return NULL;
    int64_t dims[64];
    for (int i = 0; i < ndims; i++) dims[i] = (int64_t)RM_LoadUnsigned(io);
    size_t len = 0;
    char *data = RM_LoadStringBuffer(io, &len);
    Tensor *t = RM_Calloc(1, sizeof *t);
    atomic_init(&t->refs, 1);
    t->dtype = dtype;
    t->ndims = ndims;
    t->dims = RM_Alloc(sizeof(int64_t) * (ndims ? ndims : 1));
    memcpy(t->dims, dims, sizeof(int64_t) * ndims);
    t->data = data;
    t->nbytes = len;
    return t;
}

static void model_save_cb(RedisModuleIO *io, void *v) {
    Model *m = v;
    RM_SaveStringBuffer(io, m->device, strlen(m->device));
    RM_SaveStringBuffer(io, m->tag, strlen(m->tag));
    RM_SaveUnsigned(io, (uint64_t)m->batchsize);
    RM_SaveUnsigned(io, (uint64_t)m->minbatchsize);
    RM_SaveUnsigned(io, (uint64_t)m->minbatchtimeout);
    RM_SaveStringBuffer(io, m->blob, m->bloblen);
}

static char *load_cstr(RedisModuleIO *io) {
    size_t n = 0;
    char *raw = RM_LoadStringBuffer(io, &n);
    char *s = RM_Alloc(n + 1);
    memcpy(s, raw, n);
    s[n] = 0;
    RM_Free(raw);
    return s;
}

static void *model_load_cb(RedisModuleIO *io, int encver) {
    if (encver != ENC_VER) return NULL;
    char *device = load_cstr(io), *tag = load_cstr(io);
    long long bs = (long long)RM_LoadUnsigned(io), mbs = (long long)RM_LoadUnsigned(io),
              mbt = (long long)RM_LoadUnsigned(io);
    size_t len = 0;
    char *blob = RM_LoadStringBuffer(io, &len);
    char *err = NULL;
    Model *m = model_create(device, tag, bs, mbs, mbt, blob, len, &err);
    RM_Free(device);
    RM_Free(tag);
    if (!m) {
        RM_Log(NULL, "warning", "ai: a stored model could not be loaded again: %s", err);
        RM_Free(err);
    }
    return m;
}

static void tensor_aof_cb(RedisModuleIO *aof, RedisModuleString *key, void *v) {
    Tensor *t = v;
    RedisModuleString **dims = RM_Alloc(sizeof(void *) * (t->ndims ? t->ndims : 1));
    for (int i = 0; i < t->ndims; i++) dims[i] = RM_CreateStringFromLongLong(NULL, t->dims[i]);
    RM_EmitAOF(aof, "AI.TENSORSET", "scvcb", key, DTYPES[t->dtype].name, dims, (size_t)t->ndims, "BLOB", t->data,
               t->nbytes);
    for (int i = 0; i < t->ndims; i++) RM_FreeString(NULL, dims[i]);
    RM_Free(dims);
}

static void model_aof_cb(RedisModuleIO *aof, RedisModuleString *key, void *v) {
    Model *m = v;
    RM_EmitAOF(aof, "AI.MODELSTORE", "scccclclclcb", key, "ONNX", m->device, "TAG", m->tag, "BATCHSIZE",
               m->batchsize, "MINBATCHSIZE", m->minbatchsize, "MINBATCHTIMEOUT", m->minbatchtimeout, "BLOB",
               m->blob, m->bloblen);
}

/* ================================================================== key helpers */
/* Opens key for the given type. Returns NULL and replies with an error when it holds another
 * type (WRONGTYPE) or, with must_exist, when it is empty (empty_msg). */
static RedisModuleKey *open_typed(RedisModuleCtx *ctx, RedisModuleString *name, int mode, RedisModuleType *type,
                                  int must_exist, const char *empty_msg) {
    RedisModuleKey *k = RM_OpenKey(ctx, name, mode);
    int kt = RM_KeyType(k);
    if (kt == REDISMODULE_KEYTYPE_EMPTY && must_exist) {
        RM_CloseKey(k);
        RM_ReplyWithError(ctx, empty_msg);
        return NULL;
    }
    if (kt != REDISMODULE_KEYTYPE_EMPTY && (kt != REDISMODULE_KEYTYPE_MODULE || RM_ModuleTypeGetType(k) != type)) {
        RM_CloseKey(k);
        RM_ReplyWithError(ctx, REDISMODULE_ERRORMSG_WRONGTYPE);
        return NULL;
    }
    return k;
}

/* stores value under an open key, closes it, propagates the command verbatim, replies OK */
static int store_and_reply(RedisModuleCtx *ctx, RedisModuleKey *k, RedisModuleType *type, void *value) {
    RM_ModuleTypeSetValue(k, type, value);
    RM_CloseKey(k);
    RM_ReplicateVerbatim(ctx);
    return RM_ReplyWithSimpleString(ctx, "OK");
}

#define TENSOR_EMPTY "ERR tensor key is empty or in a different shard"
#define MODEL_EMPTY "ERR model key is empty"

/* Row views, a RecArena extension: when the key `name` is empty and name ends in "[a:b]" (or
 * "[a:b]#tag", the tag ignored), the
 * tensor is elements a..b-1 along the last dimension of the tensor stored under the name before
 * the bracket, whose other dimensions must all be 1 (so the view is contiguous and needs no
 * copy). A deploy packs every user's seen items into one [1, total] tensor and the ids into one
 * [U] tensor, and a request names its rows: a million users cost a few keys, not two million.
 * Returns a new reference, or NULL after replying with an error. */
static int parse_view(const char *p, size_t l, size_t *base_len, long long *a, long long *b) {
    /* an optional "#tag" after the bracket is ignored: concurrent clients can name the same rows
     * differently (smartredis' cluster run_model names its temporary copies after the inputs) */
    for (size_t h = l; h > 0; h--) {
        char c = p[h - 1];
        if (c == '#') {
            if (h >= 2 && p[h - 2] == ']') l = h - 1;
            break;
        }
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_')) break;
    }
    if (l < 5 || p[l - 1] != ']') return 0;
    size_t open = l - 1;
    while (open > 0 && p[open] != '[') open--;
    if (p[open] != '[' || open == 0) return 0;
    const char *q = p + open + 1, *end = p + l - 1, *colon = memchr(q, ':', (size_t)(end - q));
    if (!colon || colon == q || colon + 1 == end) return 0;
    long long v[2] = {0, 0};
    const char *parts[2][2] = {{q, colon}, {colon + 1, end}};
    for (int k = 0; k < 2; k++) {
        if (parts[k][1] - parts[k][0] > 18) return 0;
        for (const char *c = parts[k][0]; c < parts[k][1]; c++) {
            if (*c < '0' || *c > '9') return 0;
            v[k] = v[k] * 10 + (*c - '0');
        }
    }
    *base_len = open, *a = v[0], *b = v[1];
    return 1;
}

static Tensor *open_tensor(RedisModuleCtx *ctx, RedisModuleString *name) {
    RedisModuleKey *k = RM_OpenKey(ctx, name, REDISMODULE_READ);
    int kt = RM_KeyType(k);
    if (kt != REDISMODULE_KEYTYPE_EMPTY) {
        RM_CloseKey(k);
        k = open_typed(ctx, name, REDISMODULE_READ, TensorType, 1, TENSOR_EMPTY);
        if (!k) return NULL;
        Tensor *t = tensor_ref(RM_ModuleTypeGetValue(k));
        RM_CloseKey(k);
        return t;
    }
    RM_CloseKey(k);
    size_t l, bl;
    long long a, b;
    const char *p = RM_StringPtrLen(name, &l);
    if (!parse_view(p, l, &bl, &a, &b)) {
        RM_ReplyWithError(ctx, TENSOR_EMPTY);
        return NULL;
    }
    RedisModuleString *base = RM_CreateString(ctx, p, bl);
    k = open_typed(ctx, base, REDISMODULE_READ, TensorType, 1, TENSOR_EMPTY);
    RM_FreeString(ctx, base);
    if (!k) return NULL;
    Tensor *t = RM_ModuleTypeGetValue(k);
    RM_CloseKey(k);
    char sb[80];
    int64_t lead = 1, last = t->ndims ? t->dims[t->ndims - 1] : 1;
    for (int i = 0; i + 1 < t->ndims; i++) lead *= t->dims[i];
    if (t->ndims == 0 || lead != 1) {
        reply_errf(ctx, "ERR a view [a:b] needs a tensor whose dimensions before the last are all 1; '%s' has %d dimensions of %lld elements before the last",
                   shown(name, sb, sizeof sb), t->ndims ? t->ndims - 1 : 0, (long long)lead);
        return NULL;
    }
    if (a >= b || b > last) {
        reply_errf(ctx, "ERR view '%s' is out of range: expected 0 <= a < b <= %lld (the tensor's last dimension)",
                   shown(name, sb, sizeof sb), (long long)last);
        return NULL;
    }
    size_t esz = DTYPES[t->dtype].size;
    Tensor *v = RM_Calloc(1, sizeof *v);
    atomic_init(&v->refs, 1);
    v->dtype = t->dtype;
    v->ndims = t->ndims;
    v->dims = RM_Alloc(sizeof(int64_t) * t->ndims);
    memcpy(v->dims, t->dims, sizeof(int64_t) * t->ndims);
    v->dims[t->ndims - 1] = b - a;
    v->nbytes = (size_t)(b - a) * esz;
    v->data = t->data + (size_t)a * esz;
    v->parent = tensor_ref(t);
    return v;
}

/* ================================================================== AI.TENSORSET */
static int parse_value(RedisModuleString *s, int dt, char *dst) {
    if (dt == DT_FLOAT || dt == DT_DOUBLE) {
        double d;
        if (RM_StringToDouble(s, &d) != REDISMODULE_OK) return 0;
        if (dt == DT_FLOAT) {
            float f = (float)d;
            memcpy(dst, &f, 4);
        } else {
            memcpy(dst, &d, 8);
        }
        return 1;
    }
    long long v;
    if (RM_StringToLongLong(s, &v) != REDISMODULE_OK) return 0;
    switch (dt) {
    case DT_INT8: if (v < INT8_MIN || v > INT8_MAX) return 0; *(int8_t *)dst = (int8_t)v; break;
    case DT_INT16: if (v < INT16_MIN || v > INT16_MAX) return 0; { int16_t x = (int16_t)v; memcpy(dst, &x, 2); } break;
    case DT_INT32: if (v < INT32_MIN || v > INT32_MAX) return 0; { int32_t x = (int32_t)v; memcpy(dst, &x, 4); } break;
    case DT_INT64: memcpy(dst, &v, 8); break;
    case DT_UINT8: if (v < 0 || v > UINT8_MAX) return 0; *(uint8_t *)dst = (uint8_t)v; break;
    case DT_UINT16: if (v < 0 || v > UINT16_MAX) return 0; { uint16_t x = (uint16_t)v; memcpy(dst, &x, 2); } break;
    case DT_BOOL: if (v != 0 && v != 1) return 0; *(uint8_t *)dst = (uint8_t)v; break;
    default: return 0;
    }
    return 1;
}

static int parse_dtype(RedisModuleString *s) {
    for (int i = 0; i < DT_N; i++)
        if (arg_is(s, DTYPES[i].name)) return i;
    return -1;
}

static int cmd_tensorset(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc < 4) return RM_WrongArity(ctx);
    char sb[80];
    int dt = parse_dtype(argv[2]);
    if (dt < 0) return RM_ReplyWithError(ctx, "ERR invalid data type");
    int64_t dims[64];
    int nd = 0, i = 3;
    size_t count = 1;
    for (; i < argc && !arg_is(argv[i], "BLOB") && !arg_is(argv[i], "VALUES"); i++) {
        long long d;
        if (RM_StringToLongLong(argv[i], &d) != REDISMODULE_OK || d <= 0)
            return RM_ReplyWithError(ctx, "ERR invalid or negative value found in tensor shape");
        if (nd == 64) return RM_ReplyWithError(ctx, "ERR tensor rank exceeds 64 dimensions");
        if (count > (size_t)cfg.max_tensor / (size_t)d)
            return reply_errf(ctx, "ERR tensor of %s would exceed the size limit of %lld bytes (MAX_TENSOR_BYTES)",
                              shown(argv[i], sb, sizeof sb), cfg.max_tensor);
        count *= (size_t)d;
        dims[nd++] = d;
    }
    if (nd == 0) return RM_ReplyWithError(ctx, "ERR tensor shape is missing (at least one dimension)");
    size_t nbytes = count * DTYPES[dt].size;
    if (nbytes > (size_t)cfg.max_tensor)
        return reply_errf(ctx, "ERR tensor of %zu bytes exceeds the size limit of %lld bytes (MAX_TENSOR_BYTES)",
                          nbytes, cfg.max_tensor);
    Tensor *t = NULL;
    if (i < argc && arg_is(argv[i], "BLOB")) {
        if (argc != i + 2)
            return RM_ReplyWithError(ctx, argc < i + 2 ? "ERR missing data after BLOB" : "ERR a single BLOB argument is expected after BLOB");
        size_t len;
        const char *p = RM_StringPtrLen(argv[i + 1], &len);
        if (len != nbytes) return RM_ReplyWithError(ctx, "ERR data length does not match tensor shape and type");
        t = tensor_new(dt, nd, dims, nbytes);
        memcpy(t->data, p, nbytes);
    } else if (i < argc) { /* VALUES */
        if ((size_t)(argc - i - 1) != count)
            return RM_ReplyWithError(ctx, "ERR wrong number of values was given in 'AI.TENSORSET' command");
        t = tensor_new(dt, nd, dims, nbytes);
        for (size_t j = 0; j < count; j++) {
            if (!parse_value(argv[i + 1 + j], dt, t->data + j * DTYPES[dt].size)) {
                tensor_unref(t);
                return reply_errf(ctx, "ERR invalid value '%s' for a %s tensor (value %zu)",
                                  shown(argv[i + 1 + j], sb, sizeof sb), DTYPES[dt].name, j + 1);
            }
        }
    } else {
        t = tensor_new(dt, nd, dims, nbytes); /* no data: zeros, as RedisAI does */
    }
    RedisModuleKey *k = open_typed(ctx, argv[1], REDISMODULE_READ | REDISMODULE_WRITE, TensorType, 0, NULL);
    if (!k) {
        tensor_unref(t);
        return REDISMODULE_OK;
    }
    return store_and_reply(ctx, k, TensorType, t);
}

/* ================================================================== AI.TENSORGET */
static void reply_values(RedisModuleCtx *ctx, const Tensor *t) {
    size_t n = tensor_count(t);
    RM_ReplyWithArray(ctx, (long)n);
    for (size_t j = 0; j < n; j++) {
        const char *p = t->data + j * DTYPES[t->dtype].size;
        switch (t->dtype) {
        case DT_FLOAT: { float f; memcpy(&f, p, 4); RM_ReplyWithDouble(ctx, f); } break;
        case DT_DOUBLE: { double d; memcpy(&d, p, 8); RM_ReplyWithDouble(ctx, d); } break;
        case DT_INT8: RM_ReplyWithLongLong(ctx, *(const int8_t *)p); break;
        case DT_INT16: { int16_t x; memcpy(&x, p, 2); RM_ReplyWithLongLong(ctx, x); } break;
        case DT_INT32: { int32_t x; memcpy(&x, p, 4); RM_ReplyWithLongLong(ctx, x); } break;
        case DT_INT64: { int64_t x; memcpy(&x, p, 8); RM_ReplyWithLongLong(ctx, x); } break;
        case DT_UINT8: case DT_BOOL: RM_ReplyWithLongLong(ctx, *(const uint8_t *)p); break;
        case DT_UINT16: { uint16_t x; memcpy(&x, p, 2); RM_ReplyWithLongLong(ctx, x); } break;
        }
    }
}

static int cmd_tensorget(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc < 2 || argc > 4) return RM_WrongArity(ctx);
    int meta = 0, blob = 0, values = 0;
    char sb[80];
    for (int i = 2; i < argc; i++) {
        if (arg_is(argv[i], "META")) meta = 1;
        else if (arg_is(argv[i], "BLOB")) blob = 1;
        else if (arg_is(argv[i], "VALUES")) values = 1;
        else return reply_errf(ctx, "ERR unrecognized parameter '%s' (expected META, BLOB or VALUES)", shown(argv[i], sb, sizeof sb));
    }
    if (blob && values) return RM_ReplyWithError(ctx, "ERR both BLOB and VALUES specified");
    if (!meta && !blob && !values) meta = blob = 1;
    Tensor *t = open_tensor(ctx, argv[1]);
    if (!t) return REDISMODULE_OK;
    if (!meta) {
        if (blob) RM_ReplyWithStringBuffer(ctx, t->data, t->nbytes);
        else reply_values(ctx, t);
        tensor_unref(t);
        return REDISMODULE_OK;
    }
    RM_ReplyWithArray(ctx, (blob || values) ? 6 : 4);
    RM_ReplyWithStringBuffer(ctx, "dtype", 5);
    RM_ReplyWithStringBuffer(ctx, DTYPES[t->dtype].name, strlen(DTYPES[t->dtype].name));
    RM_ReplyWithStringBuffer(ctx, "shape", 5);
    RM_ReplyWithArray(ctx, t->ndims);
    for (int i = 0; i < t->ndims; i++) RM_ReplyWithLongLong(ctx, t->dims[i]);
    if (blob) {
        RM_ReplyWithStringBuffer(ctx, "blob", 4);
        RM_ReplyWithStringBuffer(ctx, t->data, t->nbytes);
    } else if (values) {
        RM_ReplyWithStringBuffer(ctx, "values", 6);
        reply_values(ctx, t);
    }
    tensor_unref(t);
    return REDISMODULE_OK;
}

/* ================================================================== AI.MODELSTORE */
static int cmd_modelstore(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc < 4) return RM_WrongArity(ctx);
    char sb[80], db[80];
    if (!arg_is(argv[2], "ONNX")) {
        if (arg_is(argv[2], "TF") || arg_is(argv[2], "TFLITE") || arg_is(argv[2], "TORCH"))
            return reply_errf(ctx, "ERR unsupported backend: %s is not available in this module (ONNX only)",
                              shown(argv[2], sb, sizeof sb));
        return RM_ReplyWithError(ctx, "ERR unsupported backend");
    }
    size_t dl;
    const char *dev = RM_StringPtrLen(argv[3], &dl);
    if (!(dl >= 3 && strncasecmp(dev, "CPU", 3) == 0 && (dl == 3 || dev[3] == ':')))
        return reply_errf(ctx, "ERR Invalid DEVICE: '%s' (this module runs models on CPU)", shown(argv[3], db, sizeof db));
    char devbuf[80];
    snprintf(devbuf, sizeof devbuf, "%.*s", (int)(dl < 64 ? dl : 64), dev);
    for (char *c = devbuf; *c; c++)
        if (*c >= 'a' && *c <= 'z') *c -= 32;
    char tag[1024] = "";
    long long bs = 0, mbs = 0, mbt = 0;
    int have_bs = 0, have_mbs = 0, i = 4;
    for (; i < argc && !arg_is(argv[i], "BLOB"); i++) {
        if (arg_is(argv[i], "TAG") && i + 1 < argc) {
            size_t tl;
            const char *tp = RM_StringPtrLen(argv[++i], &tl);
            if (tl >= sizeof tag) return RM_ReplyWithError(ctx, "ERR TAG is longer than 1023 bytes");
            memcpy(tag, tp, tl);
            tag[tl] = 0;
        } else if (arg_is(argv[i], "BATCHSIZE") && i + 1 < argc) {
            if (RM_StringToLongLong(argv[++i], &bs) != REDISMODULE_OK || bs < 0)
                return RM_ReplyWithError(ctx, "ERR Invalid argument for BATCHSIZE");
            have_bs = 1;
        } else if (arg_is(argv[i], "MINBATCHSIZE") && i + 1 < argc) {
            if (!have_bs) return RM_ReplyWithError(ctx, "ERR MINBATCHSIZE specified without BATCHSIZE");
            if (RM_StringToLongLong(argv[++i], &mbs) != REDISMODULE_OK || mbs < 0)
                return RM_ReplyWithError(ctx, "ERR Invalid argument for MINBATCHSIZE");
            have_mbs = 1;
        } else if (arg_is(argv[i], "MINBATCHTIMEOUT") && i + 1 < argc) {
            if (!have_mbs) return RM_ReplyWithError(ctx, "ERR MINBATCHTIMEOUT specified without MINBATCHSIZE");
            if (RM_StringToLongLong(argv[++i], &mbt) != REDISMODULE_OK || mbt < 0)
                return RM_ReplyWithError(ctx, "ERR Invalid argument for MINBATCHTIMEOUT");
        } else if (arg_is(argv[i], "INPUTS") || arg_is(argv[i], "OUTPUTS")) {
            return RM_ReplyWithError(ctx, "ERR Inputs and outputs can be specified only for TF and TFLITE models");
        } else {
            return reply_errf(ctx, "ERR unrecognized or incomplete parameter '%s'", shown(argv[i], sb, sizeof sb));
        }
    }
    if (have_bs && bs > 0 && mbs > bs) return RM_ReplyWithError(ctx, "ERR MINBATCHSIZE is larger than BATCHSIZE");
    if (i >= argc - 1) return RM_ReplyWithError(ctx, "ERR Insufficient arguments, missing model BLOB");
    size_t len = 0;
    for (int j = i + 1; j < argc; j++) {
        size_t l;
        RM_StringPtrLen(argv[j], &l);
        len += l;
    }
    if (len > (size_t)cfg.max_model)
        return reply_errf(ctx, "ERR model of %zu bytes exceeds the size limit of %lld bytes (MAX_MODEL_BYTES)", len,
                          cfg.max_model);
    RedisModuleKey *k = open_typed(ctx, argv[1], REDISMODULE_READ | REDISMODULE_WRITE, ModelType, 0, NULL);
    if (!k) return REDISMODULE_OK;
    char *blob = RM_Alloc(len ? len : 1);
    size_t off = 0;
    for (int j = i + 1; j < argc; j++) {
        size_t l;
        const char *p = RM_StringPtrLen(argv[j], &l);
        memcpy(blob + off, p, l);
        off += l;
    }
    char *err = NULL;
    Model *m = model_create(devbuf, tag, bs, mbs, mbt, blob, len, &err);
    if (!m) {
        RM_CloseKey(k);
        RM_ReplyWithError(ctx, err);
        RM_Free(err);
        return REDISMODULE_OK;
    }
    return store_and_reply(ctx, k, ModelType, m);
}

/* ================================================================== AI.MODELGET / MODELDEL */
static void reply_blob_chunks(RedisModuleCtx *ctx, const char *blob, size_t len) {
    size_t chunk = (size_t)cfg.chunk;
    if (len <= chunk) {
        RM_ReplyWithStringBuffer(ctx, blob, len);
        return;
    }
    long n = (long)((len + chunk - 1) / chunk);
    RM_ReplyWithArray(ctx, n);
    for (size_t off = 0; off < len; off += chunk)
        RM_ReplyWithStringBuffer(ctx, blob + off, len - off < chunk ? len - off : chunk);
}

static void reply_names(RedisModuleCtx *ctx, char **names, size_t n) {
    RM_ReplyWithArray(ctx, (long)n);
    for (size_t i = 0; i < n; i++) RM_ReplyWithStringBuffer(ctx, names[i], strlen(names[i]));
}

static int cmd_modelget(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc < 2 || argc > 4) return RM_WrongArity(ctx);
    int meta = 0, blob = 0;
    char sb[80];
    for (int i = 2; i < argc; i++) {
        if (arg_is(argv[i], "META")) meta = 1;
        else if (arg_is(argv[i], "BLOB")) blob = 1;
        else return reply_errf(ctx, "ERR unrecognized parameter '%s' (expected META or BLOB)", shown(argv[i], sb, sizeof sb));
    }
    if (!meta && !blob) meta = blob = 1;
    RedisModuleKey *k = open_typed(ctx, argv[1], REDISMODULE_READ, ModelType, 1, MODEL_EMPTY);
    if (!k) return REDISMODULE_OK;
    Model *m = RM_ModuleTypeGetValue(k);
    if (!meta) {
        reply_blob_chunks(ctx, m->blob, m->bloblen);
        RM_CloseKey(k);
        return REDISMODULE_OK;
    }
    RM_ReplyWithArray(ctx, blob ? 18 : 16);
    RM_ReplyWithStringBuffer(ctx, "backend", 7);
    RM_ReplyWithStringBuffer(ctx, "ONNX", 4);
    RM_ReplyWithStringBuffer(ctx, "device", 6);
    RM_ReplyWithStringBuffer(ctx, m->device, strlen(m->device));
    RM_ReplyWithStringBuffer(ctx, "tag", 3);
    RM_ReplyWithStringBuffer(ctx, m->tag, strlen(m->tag));
    RM_ReplyWithStringBuffer(ctx, "batchsize", 9);
    RM_ReplyWithLongLong(ctx, m->batchsize);
    RM_ReplyWithStringBuffer(ctx, "minbatchsize", 12);
    RM_ReplyWithLongLong(ctx, m->minbatchsize);
    RM_ReplyWithStringBuffer(ctx, "inputs", 6);
    reply_names(ctx, m->inputs, m->ninputs);
    RM_ReplyWithStringBuffer(ctx, "outputs", 7);
    reply_names(ctx, m->outputs, m->noutputs);
    RM_ReplyWithStringBuffer(ctx, "minbatchtimeout", 15);
    RM_ReplyWithLongLong(ctx, m->minbatchtimeout);
    if (blob) {
        RM_ReplyWithStringBuffer(ctx, "blob", 4);
        reply_blob_chunks(ctx, m->blob, m->bloblen);
    }
    RM_CloseKey(k);
    return REDISMODULE_OK;
}

static int cmd_modeldel(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc != 2) return RM_WrongArity(ctx);
    RedisModuleKey *k = open_typed(ctx, argv[1], REDISMODULE_READ | REDISMODULE_WRITE, ModelType, 1, MODEL_EMPTY);
    if (!k) return REDISMODULE_OK;
    RM_DeleteKey(k);
    RM_CloseKey(k);
    RM_ReplicateVerbatim(ctx);
    return RM_ReplyWithSimpleString(ctx, "OK");
}

/* ================================================================== AI.MODELEXECUTE / MODELRUN */
/* Positions of the keys of a MODELEXECUTE (counts) or MODELRUN (no counts) call; returns the
 * number found, or -1 with *err set when the call is malformed. */
typedef struct {
    int in_at, nin, out_at, nout;
    long long timeout;
    const char *err;
} ExecArgs;

static int parse_exec(RedisModuleString **argv, int argc, int with_counts, ExecArgs *a) {
    memset(a, 0, sizeof *a);
    int i = 2;
    if (!with_counts && i + 1 < argc && arg_is(argv[i], "TIMEOUT")) {
        if (RM_StringToLongLong(argv[i + 1], &a->timeout) != REDISMODULE_OK || a->timeout <= 0)
            return a->err = "ERR Invalid value for TIMEOUT", -1;
        i += 2;
    }
    if (i >= argc || !arg_is(argv[i], "INPUTS")) return a->err = "ERR INPUTS not specified", -1;
    i++;
    if (with_counts) { /* with_counts 2: AI._MODELEXECUTE_REPLY, INPUTS n k... [TIMEOUT t], no OUTPUTS */
        int reply = with_counts == 2;
        long long n;
        if (i >= argc || RM_StringToLongLong(argv[i], &n) != REDISMODULE_OK || n < 0)
            return a->err = "ERR Invalid argument for input_count", -1;
        if (n > argc - i - 1)
            return a->err = reply ? "ERR number of input keys does not match the number of given arguments"
                                  : "ERR number of input keys to AI.MODELEXECUTE command does not match the number of given arguments", -1;
        a->in_at = ++i;
        a->nin = (int)n;
        i += (int)n;
        if (!reply) {
            if (i >= argc || !arg_is(argv[i], "OUTPUTS")) return a->err = "ERR OUTPUTS not specified", -1;
            i++;
            if (i >= argc || RM_StringToLongLong(argv[i], &n) != REDISMODULE_OK || n < 0)
                return a->err = "ERR Invalid argument for output_count", -1;
            if (n > argc - i - 1) return a->err = "ERR number of output keys to AI.MODELEXECUTE command does not match the number of given arguments", -1;
            a->out_at = ++i;
            a->nout = (int)n;
            i += (int)n;
        }
        if (i < argc) {
            if (!arg_is(argv[i], "TIMEOUT") || i + 2 != argc)
                return a->err = reply ? "ERR Invalid argument after the inputs (only TIMEOUT t may follow)"
                                      : "ERR Invalid argument after OUTPUTS (only TIMEOUT t may follow)", -1;
            if (RM_StringToLongLong(argv[i + 1], &a->timeout) != REDISMODULE_OK || a->timeout <= 0)
                return a->err = "ERR Invalid value for TIMEOUT", -1;
        }
    } else {
        a->in_at = i;
        while (i < argc && !arg_is(argv[i], "OUTPUTS")) i++;
        a->nin = i - a->in_at;
        if (i >= argc) return a->err = "ERR OUTPUTS not specified", -1;
        a->out_at = ++i;
        a->nout = argc - i;
    }
    return a->nin + a->nout;
}

/* Writes r's outputs to the keyspace and replies. All output keys are checked before any is
 * written, so a WRONGTYPE output writes nothing. */
static int write_outputs(RedisModuleCtx *ctx, Req *r) {
    if (r->timedout) return RM_ReplyWithSimpleString(ctx, "TIMEDOUT");
    if (r->err) return RM_ReplyWithError(ctx, r->err);
    RedisModuleKey **keys = RM_Calloc(r->nout ? r->nout : 1, sizeof(void *));
    RedisModuleString **names = RM_Calloc(r->nout ? r->nout : 1, sizeof(void *));
    int ok = 1;
    for (size_t o = 0; o < r->nout && ok; o++) {
        names[o] = RM_CreateString(ctx, r->outkeys[o], r->outlens[o]);
        keys[o] = open_typed(ctx, names[o], REDISMODULE_READ | REDISMODULE_WRITE, TensorType, 0, NULL);
        ok = keys[o] != NULL;
    }
    for (size_t o = 0; o < r->nout; o++) {
        if (ok) {
            Tensor *t = r->out[o];
            RM_ModuleTypeSetValue(keys[o], TensorType, t);
            r->out[o] = NULL;
            /* outputs reach replicas and the AOF as plain TENSORSETs */
            RedisModuleString **dims = RM_Alloc(sizeof(void *) * (t->ndims ? t->ndims : 1));
            for (int i = 0; i < t->ndims; i++) dims[i] = RM_CreateStringFromLongLong(ctx, t->dims[i]);
            RM_Replicate(ctx, "AI.TENSORSET", "scvcb", names[o], DTYPES[t->dtype].name, dims, (size_t)t->ndims,
                         "BLOB", t->data, t->nbytes);
            for (int i = 0; i < t->ndims; i++) RM_FreeString(ctx, dims[i]);
            RM_Free(dims);
        }
        if (keys[o]) RM_CloseKey(keys[o]);
        if (names[o]) RM_FreeString(ctx, names[o]);
    }
    RM_Free(keys);
    RM_Free(names);
    return ok ? RM_ReplyWithSimpleString(ctx, "OK") : REDISMODULE_OK;
}

/* Replies with r's outputs as [[dtype, shape, blob], ...], the fields AI.TENSORGET META BLOB
 * gives, and writes nothing: nothing reaches the keyspace, replicas or the AOF. */
static int reply_outputs(RedisModuleCtx *ctx, Req *r) {
    if (r->timedout) return RM_ReplyWithSimpleString(ctx, "TIMEDOUT");
    if (r->err) return RM_ReplyWithError(ctx, r->err);
    RM_ReplyWithArray(ctx, r->nout);
    for (size_t o = 0; o < r->nout; o++) {
        Tensor *t = r->out[o];
        RM_ReplyWithArray(ctx, 3);
        RM_ReplyWithStringBuffer(ctx, DTYPES[t->dtype].name, strlen(DTYPES[t->dtype].name));
        RM_ReplyWithArray(ctx, t->ndims);
        for (int i = 0; i < t->ndims; i++) RM_ReplyWithLongLong(ctx, t->dims[i]);
        RM_ReplyWithStringBuffer(ctx, t->data, t->nbytes);
    }
    return REDISMODULE_OK;
}

static int exec_reply(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    (void)argv, (void)argc;
    Req *r = RM_GetBlockedClientPrivateData(ctx);
    return r->reply_outputs ? reply_outputs(ctx, r) : write_outputs(ctx, r);
}

static void exec_free(RedisModuleCtx *ctx, void *p) {
    (void)ctx;
    req_free(p);
}

static int exec_common(RedisModuleCtx *ctx, RedisModuleString **argv, int argc, int with_counts) {
    ExecArgs a;
    if (RM_IsKeysPositionRequest(ctx)) {
        RM_KeyAtPos(ctx, 1);
        if (parse_exec(argv, argc, with_counts, &a) >= 0) {
            for (int i = 0; i < a.nin; i++) RM_KeyAtPos(ctx, a.in_at + i);
            for (int i = 0; i < a.nout; i++) RM_KeyAtPos(ctx, a.out_at + i);
        }
        return REDISMODULE_OK;
    }
    if (argc < 3) return RM_WrongArity(ctx);
    if (parse_exec(argv, argc, with_counts, &a) < 0) return RM_ReplyWithError(ctx, a.err);
    RedisModuleKey *mk = open_typed(ctx, argv[1], REDISMODULE_READ, ModelType, 1, MODEL_EMPTY);
    if (!mk) return REDISMODULE_OK;
    Model *m = RM_ModuleTypeGetValue(mk);
    RM_CloseKey(mk);
    if ((size_t)a.nin != m->ninputs)
        return reply_errf(ctx, "ERR Number of keys given as INPUTS here does not match model definition (expected %zu, got %d)", m->ninputs, a.nin);
    if (with_counts != 2 && (size_t)a.nout != m->noutputs)
        return reply_errf(ctx, "ERR Number of keys given as OUTPUTS here does not match model definition (expected %zu, got %d)", m->noutputs, a.nout);
    Req *r = RM_Calloc(1, sizeof *r);
    r->model = model_ref(m);
    r->in = RM_Calloc(a.nin ? a.nin : 1, sizeof(Tensor *));
    r->outkeys = RM_Calloc(a.nout ? a.nout : 1, sizeof(char *));
    r->outlens = RM_Calloc(a.nout ? a.nout : 1, sizeof(size_t));
    r->timeout_ms = a.timeout;
    for (int i = 0; i < a.nin; i++) {
        Tensor *t = open_tensor(ctx, argv[a.in_at + i]);
        if (!t) {
            req_free(r);
            return REDISMODULE_OK;
        }
        r->in[r->nin++] = t;
    }
    if (with_counts == 2) { /* the model's outputs, each returned to the caller */
        r->reply_outputs = 1;
        r->outkeys = RM_Realloc(r->outkeys, (m->noutputs ? m->noutputs : 1) * sizeof(char *));
        r->outlens = RM_Realloc(r->outlens, (m->noutputs ? m->noutputs : 1) * sizeof(size_t));
        for (size_t o = 0; o < m->noutputs; o++) r->outkeys[o] = NULL, r->outlens[o] = 0;
        r->nout = m->noutputs;
    }
    for (int i = 0; i < a.nout; i++) {
        size_t l;
        const char *p = RM_StringPtrLen(argv[a.out_at + i], &l);
        r->outkeys[i] = RM_Alloc(l + 1);
        memcpy(r->outkeys[i], p, l);
        r->outkeys[i][l] = 0;
        r->outlens[i] = l;
        r->nout++;
    }
    r->enqueued_us = now_us();
    if (RM_GetContextFlags(ctx) & (REDISMODULE_CTX_FLAGS_MULTI | REDISMODULE_CTX_FLAGS_LUA)) {
        /* inside MULTI or a script a client cannot block: run here, on the main thread */
        Req *one[1] = {r};
        run_batch(one, 1);
        int rc = r->reply_outputs ? reply_outputs(ctx, r) : write_outputs(ctx, r);
        req_free(r);
        return rc;
    }
    r->bc = RM_BlockClient(ctx, exec_reply, NULL, exec_free, 0);
    q_push(r);
    return REDISMODULE_OK;
}

static int cmd_modelexecute(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    return exec_common(ctx, argv, argc, 1);
}

static int cmd_modelrun(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    return exec_common(ctx, argv, argc, 0);
}

/* AI._MODELEXECUTE_REPLY model INPUTS n key... [TIMEOUT ms]: runs the model like
 * AI.MODELEXECUTE but returns its outputs instead of storing them. A serving request is then
 * one round trip, and it writes nothing: traffic never grows the keyspace, replicas or AOF.
 * Not part of RedisAI (smartredis cannot send it); the HTTP service uses it. */
static int cmd_modelexecute_reply(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    return exec_common(ctx, argv, argc, 2);
}

/* ================================================================== AI._MODELSCAN */
static void scan_cb(RedisModuleCtx *ctx, RedisModuleString *name, RedisModuleKey *key, void *priv) {
    long *n = priv;
    RedisModuleKey *k = key ? key : RM_OpenKey(ctx, name, REDISMODULE_READ);
    if (k && RM_KeyType(k) == REDISMODULE_KEYTYPE_MODULE && RM_ModuleTypeGetType(k) == ModelType) {
        Model *m = RM_ModuleTypeGetValue(k);
        RM_ReplyWithArray(ctx, 2);
        RM_ReplyWithString(ctx, name);
        RM_ReplyWithStringBuffer(ctx, m->tag, strlen(m->tag));
        (*n)++;
    }
    if (!key && k) RM_CloseKey(k);
}

static int cmd_modelscan(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    (void)argv;
    if (argc != 1) return RM_WrongArity(ctx);
    long n = 0;
    RM_ReplyWithArray(ctx, REDISMODULE_POSTPONED_ARRAY_LEN);
    RedisModuleScanCursor *c = RM_ScanCursorCreate();
    while (RM_Scan(ctx, c, scan_cb, &n)) {
    }
    RM_ScanCursorDestroy(c);
    RM_ReplySetArrayLength(ctx, n);
    return REDISMODULE_OK;
}

/* ================================================================== AI.INFO */
static int cmd_info(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc > 3) return RM_WrongArity(ctx);
    if (argc == 1) {
        pthread_mutex_lock(&q_lock);
        long long qlen = q_len, runs = runs_total, batched = batched_total;
        pthread_mutex_unlock(&q_lock);
        RM_ReplyWithArray(ctx, 14);
        RM_ReplyWithStringBuffer(ctx, "version", 7);
        RM_ReplyWithStringBuffer(ctx, "1.0.0", 5);
        RM_ReplyWithStringBuffer(ctx, "onnxruntime_version", 19);
        RM_ReplyWithStringBuffer(ctx, ort_version, strlen(ort_version));
        RM_ReplyWithStringBuffer(ctx, "threads_per_queue", 17);
        RM_ReplyWithLongLong(ctx, cfg.threads);
        RM_ReplyWithStringBuffer(ctx, "queue_length", 12);
        RM_ReplyWithLongLong(ctx, qlen);
        RM_ReplyWithStringBuffer(ctx, "runs", 4);
        RM_ReplyWithLongLong(ctx, runs);
        RM_ReplyWithStringBuffer(ctx, "batched_requests", 16);
        RM_ReplyWithLongLong(ctx, batched);
        RM_ReplyWithStringBuffer(ctx, "model_chunk_size", 16);
        RM_ReplyWithLongLong(ctx, cfg.chunk);
        return REDISMODULE_OK;
    }
    int reset = 0;
    char sb[80];
    if (argc == 3) {
        if (!arg_is(argv[2], "RESETSTAT"))
            return reply_errf(ctx, "ERR unrecognized parameter '%s' (expected RESETSTAT)", shown(argv[2], sb, sizeof sb));
        reset = 1;
    }
    RedisModuleKey *k = RM_OpenKey(ctx, argv[1], REDISMODULE_READ);
    if (RM_KeyType(k) != REDISMODULE_KEYTYPE_MODULE || RM_ModuleTypeGetType(k) != ModelType) {
        RM_CloseKey(k);
        return RM_ReplyWithError(ctx, "ERR cannot find run info for key");
    }
    Model *m = RM_ModuleTypeGetValue(k);
    RM_CloseKey(k);
    /* RESETSTAT replies with the figures as they were, then zeroes them: smartredis parses
     * the reply of get_ai_info(..., reset_stat=True) as the same 18-element array */
    pthread_mutex_lock(&m->stats_lock);
    long long dur = m->duration_us, samples = m->samples, calls = m->calls, errors = m->errors;
    if (reset) m->duration_us = m->samples = m->calls = m->errors = 0;
    pthread_mutex_unlock(&m->stats_lock);
    RM_ReplyWithArray(ctx, 18);
    RM_ReplyWithStringBuffer(ctx, "key", 3);
    RM_ReplyWithString(ctx, argv[1]);
    RM_ReplyWithStringBuffer(ctx, "type", 4);
    RM_ReplyWithStringBuffer(ctx, "MODEL", 5);
    RM_ReplyWithStringBuffer(ctx, "backend", 7);
    RM_ReplyWithStringBuffer(ctx, "ONNX", 4);
    RM_ReplyWithStringBuffer(ctx, "device", 6);
    RM_ReplyWithStringBuffer(ctx, m->device, strlen(m->device));
    RM_ReplyWithStringBuffer(ctx, "tag", 3);
    RM_ReplyWithStringBuffer(ctx, m->tag, strlen(m->tag));
    RM_ReplyWithStringBuffer(ctx, "duration", 8);
    RM_ReplyWithLongLong(ctx, dur);
    RM_ReplyWithStringBuffer(ctx, "samples", 7);
    RM_ReplyWithLongLong(ctx, samples);
    RM_ReplyWithStringBuffer(ctx, "calls", 5);
    RM_ReplyWithLongLong(ctx, calls);
    RM_ReplyWithStringBuffer(ctx, "errors", 6);
    RM_ReplyWithLongLong(ctx, errors);
    return REDISMODULE_OK;
}

/* ================================================================== AI.CONFIG */
static int set_size(RedisModuleString *v, long long *dst, long long lo, long long hi) {
    long long x;
    if (RM_StringToLongLong(v, &x) != REDISMODULE_OK || x < lo || x > hi) return 0;
    *dst = x;
    return 1;
}

static int cmd_config(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc < 2) return RM_WrongArity(ctx);
    char sb[80];
    if (arg_is(argv[1], "GET")) {
        if (argc != 3) return RM_WrongArity(ctx);
        if (arg_is(argv[2], "MODEL_CHUNK_SIZE")) return RM_ReplyWithLongLong(ctx, cfg.chunk);
        if (arg_is(argv[2], "MAX_TENSOR_BYTES")) return RM_ReplyWithLongLong(ctx, cfg.max_tensor);
        if (arg_is(argv[2], "MAX_MODEL_BYTES")) return RM_ReplyWithLongLong(ctx, cfg.max_model);
        if (arg_is(argv[2], "THREADS_PER_QUEUE")) return RM_ReplyWithLongLong(ctx, cfg.threads);
        if (arg_is(argv[2], "INTRA_OP_PARALLELISM")) return RM_ReplyWithLongLong(ctx, cfg.intra);
        if (arg_is(argv[2], "INTER_OP_PARALLELISM")) return RM_ReplyWithLongLong(ctx, cfg.inter);
        if (arg_is(argv[2], "ALLOW_SPINNING")) return RM_ReplyWithLongLong(ctx, cfg.allow_spinning);
        if (arg_is(argv[2], "BACKENDSPATH"))
            return RM_ReplyWithStringBuffer(ctx, cfg.backends_path, strlen(cfg.backends_path));
        return reply_errf(ctx, "ERR unsupported config parameter '%s'", shown(argv[2], sb, sizeof sb));
    }
    if (argc != 3 && !(arg_is(argv[1], "LOADBACKEND") && argc == 4)) return RM_WrongArity(ctx);
    if (arg_is(argv[1], "MODEL_CHUNK_SIZE")) {
        if (!set_size(argv[2], &cfg.chunk, 1, LLONG_MAX)) return RM_ReplyWithError(ctx, "ERR MODEL_CHUNK_SIZE: expected a positive integer");
    } else if (arg_is(argv[1], "MAX_TENSOR_BYTES")) {
        if (!set_size(argv[2], &cfg.max_tensor, 1, LLONG_MAX)) return RM_ReplyWithError(ctx, "ERR MAX_TENSOR_BYTES: expected a positive integer");
    } else if (arg_is(argv[1], "MAX_MODEL_BYTES")) {
        if (!set_size(argv[2], &cfg.max_model, 1, LLONG_MAX)) return RM_ReplyWithError(ctx, "ERR MAX_MODEL_BYTES: expected a positive integer");
    } else if (arg_is(argv[1], "BACKENDSPATH")) {
        size_t l;
        const char *p = RM_StringPtrLen(argv[2], &l);
        if (l >= sizeof cfg.backends_path) return RM_ReplyWithError(ctx, "ERR BACKENDSPATH is too long");
        memcpy(cfg.backends_path, p, l);
        cfg.backends_path[l] = 0;
    } else if (arg_is(argv[1], "LOADBACKEND")) {
        if (!arg_is(argv[2], "ONNX"))
            return reply_errf(ctx, "ERR unsupported backend: %s cannot be loaded into this module (ONNX only)",
                              shown(argv[2], sb, sizeof sb));
        /* ONNX Runtime is loaded at module start; loading it again is a no-op */
    } else {
        return reply_errf(ctx, "ERR unsupported subcommand '%s'", shown(argv[1], sb, sizeof sb));
    }
    return RM_ReplyWithSimpleString(ctx, "OK");
}

/* ================================================================== scripts (TorchScript) */
static int cmd_script(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    (void)argv, (void)argc;
    return RM_ReplyWithError(ctx, "ERR scripts need the TORCH backend, which this module does not provide (ONNX only)");
}

/* ================================================================== loading */
static int verify_ort(RedisModuleCtx *ctx) {
    /* y = x + x on a known input, end to end through every slot the module uses */
    OrtSession *s = NULL;
    char *e = session_create((const char *)SELFTEST_ONNX, sizeof SELFTEST_ONNX, &s);
    float x[4] = {1.5f, -2.0f, 0.25f, 3.0f};
    int64_t dims[2] = {2, 2};
    OrtValue *in = NULL, *out = NULL;
    const char *iname = "x", *oname = "y";
    if (!e) e = ort_err(ORT_CreateTensorWithDataAsOrtValue(ort_cpu, x, sizeof x, dims, 2, ONNX_FLOAT, &in), "tensor");
    if (!e) e = ort_err(ORT_Run(s, NULL, &iname, (const OrtValue *const *)&in, 1, &oname, 1, &out), "run");
    float *y = NULL;
    if (!e) e = ort_err(ORT_GetTensorMutableData(out, (void **)&y), "data");
    if (!e) {
        OrtTensorTypeAndShapeInfo *info = NULL;
        size_t nd = 0;
        int et = 0;
        int64_t od[2] = {0, 0};
        e = ort_err(ORT_GetTensorTypeAndShape(out, &info), "shape");
        if (!e) e = ort_err(ORT_GetTensorElementType(info, &et), "type");
        if (!e) e = ort_err(ORT_GetDimensionsCount(info, &nd), "rank");
        if (!e && nd == 2) e = ort_err(ORT_GetDimensions(info, od, 2), "dims");
        if (info) ORT_ReleaseTensorTypeAndShapeInfo(info);
        if (!e && (et != ONNX_FLOAT || nd != 2 || od[0] != 2 || od[1] != 2)) e = errf("self-test output has the wrong type or shape");
        for (int i = 0; !e && i < 4; i++)
            if (y[i] != 2 * x[i]) e = errf("self-test output %d is %g, expected %g", i, y[i], 2 * x[i]);
    }
    if (in) ORT_ReleaseValue(in);
    if (out) ORT_ReleaseValue(out);
    if (s) ORT_ReleaseSession(s);
    if (e) {
        RM_Log(ctx, "warning", "ai: ONNX Runtime %s failed the load-time self-test: %s", ort_version, e);
        RM_Free(e);
        return 0;
    }
    return 1;
}

static int load_ort(RedisModuleCtx *ctx, const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        RM_Log(ctx, "warning", "ai: cannot load ONNX Runtime from '%s': %s (give ORT_LIB /path/to/libonnxruntime.so.1.x)",
               path, dlerror());
        return 0;
    }
    const OrtApiBase *(*get_base)(void) = (const OrtApiBase *(*)(void))dlsym(h, "OrtGetApiBase");
    if (!get_base) {
        RM_Log(ctx, "warning", "ai: '%s' does not export OrtGetApiBase: not an ONNX Runtime library", path);
        return 0;
    }
    const OrtApiBase *base = get_base();
    snprintf(ort_version, sizeof ort_version, "%s", base->GetVersionString());
    int major = 0, minor = -1;
    int verified = sscanf(ort_version, "%d.%d", &major, &minor) == 2 && major == 1 && minor >= ORT_VERIFIED_MIN &&
                   minor <= ORT_VERIFIED_MAX;
    if (!verified && !cfg.allow_unverified) {
        RM_Log(ctx, "warning",
               "ai: refusing ONNX Runtime %s from '%s': this module's API table is verified for 1.%d to 1.%d only "
               "(ORT_ALLOW_UNVERIFIED 1 to try anyway)",
               ort_version, path, ORT_VERIFIED_MIN, ORT_VERIFIED_MAX);
        return 0;
    }
    void *const *api = base->GetApi(ORT_API_VERSION_REQUESTED);
    if (!api) {
        RM_Log(ctx, "warning", "ai: ONNX Runtime %s does not provide API version %d", ort_version, ORT_API_VERSION_REQUESTED);
        return 0;
    }
#define ORT_FETCH(slot, ret, name, args) ORT_##name = (ret(*) args)api[slot];
    ORT_API(ORT_FETCH)
    OrtStatus *st = ORT_CreateEnv(ORT_LOGGING_LEVEL_ERROR, "recarena_ai", &ort_env);
    if (!st) st = ORT_CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &ort_cpu);
    if (st) {
        RM_Log(ctx, "warning", "ai: ONNX Runtime environment: %s", ORT_GetErrorMessage(st));
        ORT_ReleaseStatus(st);
        return 0;
    }
    return verify_ort(ctx);
}

__attribute__((visibility("default"))) int RedisModule_OnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    int (*get_api)(const char *, void *) = (int (*)(const char *, void *))(unsigned long)((void **)ctx)[0];
#define RM_FETCH(ret, name, args)                                                           \
    if (get_api("RedisModule_" #name, (void *)&RM_##name) != REDISMODULE_OK) return REDISMODULE_ERR;
    RM_API(RM_FETCH)
    if (RM_IsModuleNameBusy(MODULE_NAME)) return REDISMODULE_ERR;
    RM_SetModuleAttribs(ctx, MODULE_NAME, MODULE_VERSION, REDISMODULE_APIVER_1);

    char ort_path[4096] = "";
    const char *env_path = getenv("RECARENA_ORT_LIB");
    if (env_path) snprintf(ort_path, sizeof ort_path, "%s", env_path);
    for (int i = 0; i < argc; i += 2) {
        char sb[80];
        if (i + 1 >= argc) {
            RM_Log(ctx, "warning", "ai: module argument '%s' has no value", shown(argv[i], sb, sizeof sb));
            return REDISMODULE_ERR;
        }
        size_t l;
        const char *v = RM_StringPtrLen(argv[i + 1], &l);
        int ok = 1;
        if (arg_is(argv[i], "ORT_LIB")) snprintf(ort_path, sizeof ort_path, "%.*s", (int)l, v);
        else if (arg_is(argv[i], "BACKENDSPATH")) snprintf(cfg.backends_path, sizeof cfg.backends_path, "%.*s", (int)l, v);
        else if (arg_is(argv[i], "THREADS_PER_QUEUE")) ok = set_size(argv[i + 1], &cfg.threads, 1, 256);
        else if (arg_is(argv[i], "INTRA_OP_PARALLELISM")) ok = set_size(argv[i + 1], &cfg.intra, 0, 1024);
        else if (arg_is(argv[i], "INTER_OP_PARALLELISM")) ok = set_size(argv[i + 1], &cfg.inter, 0, 1024);
        else if (arg_is(argv[i], "MODEL_CHUNK_SIZE")) ok = set_size(argv[i + 1], &cfg.chunk, 1, LLONG_MAX);
        else if (arg_is(argv[i], "MAX_TENSOR_BYTES")) ok = set_size(argv[i + 1], &cfg.max_tensor, 1, LLONG_MAX);
        else if (arg_is(argv[i], "MAX_MODEL_BYTES")) ok = set_size(argv[i + 1], &cfg.max_model, 1, LLONG_MAX);
        else if (arg_is(argv[i], "ORT_ALLOW_UNVERIFIED")) ok = set_size(argv[i + 1], &cfg.allow_unverified, 0, 1);
        else if (arg_is(argv[i], "ALLOW_SPINNING")) ok = set_size(argv[i + 1], &cfg.allow_spinning, 0, 1);
        else {
            RM_Log(ctx, "warning", "ai: unknown module argument '%s'", shown(argv[i], sb, sizeof sb));
            return REDISMODULE_ERR;
        }
        if (!ok) {
            RM_Log(ctx, "warning", "ai: bad value for module argument '%s'", shown(argv[i], sb, sizeof sb));
            return REDISMODULE_ERR;
        }
    }
    if (!ort_path[0]) snprintf(ort_path, sizeof ort_path, "libonnxruntime.so.1");
    if (!load_ort(ctx, ort_path)) return REDISMODULE_ERR;

    RedisModuleTypeMethods tm = {.version = REDISMODULE_TYPE_METHOD_VERSION_1,
                                 .rdb_load = tensor_load_cb,
                                 .rdb_save = tensor_save_cb,
                                 .aof_rewrite = tensor_aof_cb,
                                 .mem_usage = tensor_mem_cb,
                                 .free = tensor_free_cb};
    TensorType = RM_CreateDataType(ctx, "RA_TENSOR", ENC_VER, &tm);
    RedisModuleTypeMethods mm = {.version = REDISMODULE_TYPE_METHOD_VERSION_1,
                                 .rdb_load = model_load_cb,
                                 .rdb_save = model_save_cb,
                                 .aof_rewrite = model_aof_cb,
                                 .mem_usage = model_mem_cb,
                                 .free = model_free_cb};
    ModelType = RM_CreateDataType(ctx, "RA__MODEL", ENC_VER, &mm);
    if (!TensorType || !ModelType) return REDISMODULE_ERR;

    struct {
        const char *name;
        RedisModuleCmdFunc fn;
        const char *flags;
        int first, last, step;
    } cmds[] = {
        {"ai.tensorset", cmd_tensorset, "write deny-oom", 1, 1, 1},
        {"ai.tensorget", cmd_tensorget, "readonly", 1, 1, 1},
        {"ai.modelstore", cmd_modelstore, "write deny-oom", 1, 1, 1},
        {"ai.modelget", cmd_modelget, "readonly", 1, 1, 1},
        {"ai.modeldel", cmd_modeldel, "write", 1, 1, 1},
        {"ai.modelexecute", cmd_modelexecute, "write deny-oom getkeys-api", 1, 1, 1},
        {"ai.modelrun", cmd_modelrun, "write deny-oom getkeys-api", 1, 1, 1},
        {"ai._modelexecute_reply", cmd_modelexecute_reply, "readonly getkeys-api", 1, 1, 1},
        {"ai._modelscan", cmd_modelscan, "readonly", 0, 0, 0},
        {"ai.info", cmd_info, "readonly", 1, 1, 1},
        {"ai.config", cmd_config, "", 0, 0, 0},
        {"ai.scriptset", cmd_script, "write", 1, 1, 1},
        {"ai.scriptget", cmd_script, "readonly", 1, 1, 1},
        {"ai.scriptdel", cmd_script, "write", 1, 1, 1},
        {"ai.scriptrun", cmd_script, "write", 1, 1, 1},
        {"ai.scriptexecute", cmd_script, "write", 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (RM_CreateCommand(ctx, cmds[i].name, cmds[i].fn, cmds[i].flags, cmds[i].first, cmds[i].last,
                             cmds[i].step) != REDISMODULE_OK)
            return REDISMODULE_ERR;

    for (long long i = 0; i < cfg.threads; i++) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &at, worker, NULL) != 0) {
            RM_Log(ctx, "warning", "ai: cannot start worker thread: %s", strerror(errno));
            return REDISMODULE_ERR;
        }
        pthread_attr_destroy(&at);
    }
    RM_Log(ctx, "notice", "ai: RedisAI-compatible module ready (ONNX Runtime %s, %lld worker threads)", ort_version,
           cfg.threads);
    return REDISMODULE_OK;
}
