/* The parts of two C APIs this module uses, declared here because no registry ships their
 * headers (neither redismodule.h nor onnxruntime_c_api.h).
 *
 * Redis modules: every function is fetched by name through RedisModule_GetApi, the first
 * pointer of the context handed to RedisModule_OnLoad; the names, signatures and constants
 * below are those of the documented module API (stable since Redis 6.0; Valkey keeps them).
 *
 * ONNX Runtime: OrtGetApiBase()->GetApi(v) returns a table of function pointers that only
 * ever grows by appending, so a slot index names a function for every version >= the one
 * that introduced it. ORT_* below are the slots used here, with their signatures. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- Redis module API */
typedef struct RedisModuleCtx RedisModuleCtx;
typedef struct RedisModuleKey RedisModuleKey;
typedef struct RedisModuleString RedisModuleString;
typedef struct RedisModuleIO RedisModuleIO;
typedef struct RedisModuleType RedisModuleType;
typedef struct RedisModuleDigest RedisModuleDigest;
typedef struct RedisModuleBlockedClient RedisModuleBlockedClient;
typedef struct RedisModuleScanCursor RedisModuleScanCursor;

#define REDISMODULE_OK 0
#define REDISMODULE_ERR 1
#define REDISMODULE_APIVER_1 1
#define REDISMODULE_TYPE_METHOD_VERSION_1 1
#define REDISMODULE_READ (1 << 0)
#define REDISMODULE_WRITE (1 << 1)
#define REDISMODULE_KEYTYPE_EMPTY 0
#define REDISMODULE_KEYTYPE_MODULE 6
#define REDISMODULE_POSTPONED_ARRAY_LEN -1L
#define REDISMODULE_CTX_FLAGS_LUA (1 << 0)
#define REDISMODULE_CTX_FLAGS_MULTI (1 << 1)
#define REDISMODULE_ERRORMSG_WRONGTYPE "WRONGTYPE Operation against a key holding the wrong kind of value"

typedef int (*RedisModuleCmdFunc)(RedisModuleCtx *ctx, RedisModuleString **argv, int argc);
typedef void *(*RedisModuleTypeLoadFunc)(RedisModuleIO *rdb, int encver);
typedef void (*RedisModuleTypeSaveFunc)(RedisModuleIO *rdb, void *value);
typedef void (*RedisModuleTypeRewriteFunc)(RedisModuleIO *aof, RedisModuleString *key, void *value);
typedef size_t (*RedisModuleTypeMemUsageFunc)(const void *value);
typedef void (*RedisModuleTypeDigestFunc)(RedisModuleDigest *digest, void *value);
typedef void (*RedisModuleTypeFreeFunc)(void *value);
typedef void (*RedisModuleScanCB)(RedisModuleCtx *ctx, RedisModuleString *keyname, RedisModuleKey *key,
                                  void *privdata);

/* version 1 of the type-methods struct: the server reads only the fields of the version given */
typedef struct {
    uint64_t version;
    RedisModuleTypeLoadFunc rdb_load;
    RedisModuleTypeSaveFunc rdb_save;
    RedisModuleTypeRewriteFunc aof_rewrite;
    RedisModuleTypeMemUsageFunc mem_usage;
    RedisModuleTypeDigestFunc digest;
    RedisModuleTypeFreeFunc free;
} RedisModuleTypeMethods;

/* X-macro: (return type, name, parameters). Each becomes a pointer RM_<name> filled from
 * "RedisModule_<name>" at load. */
#define RM_API(X)                                                                                              \
    X(int, SetModuleAttribs, (RedisModuleCtx *, const char *, int, int))                                       \
    X(int, IsModuleNameBusy, (const char *))                                                                   \
    X(int, CreateCommand, (RedisModuleCtx *, const char *, RedisModuleCmdFunc, const char *, int, int, int))   \
    X(RedisModuleType *, CreateDataType, (RedisModuleCtx *, const char *, int, RedisModuleTypeMethods *))     \
    X(int, ModuleTypeSetValue, (RedisModuleKey *, RedisModuleType *, void *))                                  \
    X(RedisModuleType *, ModuleTypeGetType, (RedisModuleKey *))                                                \
    X(void *, ModuleTypeGetValue, (RedisModuleKey *))                                                          \
    X(void *, OpenKey, (RedisModuleCtx *, RedisModuleString *, int))                                           \
    X(void, CloseKey, (RedisModuleKey *))                                                                      \
    X(int, KeyType, (RedisModuleKey *))                                                                        \
    X(int, DeleteKey, (RedisModuleKey *))                                                                      \
    X(int, WrongArity, (RedisModuleCtx *))                                                                     \
    X(int, ReplyWithError, (RedisModuleCtx *, const char *))                                                   \
    X(int, ReplyWithSimpleString, (RedisModuleCtx *, const char *))                                            \
    X(int, ReplyWithLongLong, (RedisModuleCtx *, long long))                                                   \
    X(int, ReplyWithDouble, (RedisModuleCtx *, double))                                                        \
    X(int, ReplyWithStringBuffer, (RedisModuleCtx *, const char *, size_t))                                    \
    X(int, ReplyWithString, (RedisModuleCtx *, RedisModuleString *))                                           \
    X(int, ReplyWithArray, (RedisModuleCtx *, long))                                                           \
    X(void, ReplySetArrayLength, (RedisModuleCtx *, long))                                                     \
    X(const char *, StringPtrLen, (const RedisModuleString *, size_t *))                                      \
    X(int, StringToLongLong, (const RedisModuleString *, long long *))                                         \
    X(int, StringToDouble, (const RedisModuleString *, double *))                                              \
    X(RedisModuleString *, CreateString, (RedisModuleCtx *, const char *, size_t))                             \
    X(RedisModuleString *, CreateStringFromLongLong, (RedisModuleCtx *, long long))                            \
    X(void, FreeString, (RedisModuleCtx *, RedisModuleString *))                                               \
    X(void *, Alloc, (size_t))                                                                                 \
    X(void *, Calloc, (size_t, size_t))                                                                        \
    X(void *, Realloc, (void *, size_t))                                                                       \
    X(void, Free, (void *))                                                                                    \
    X(void, SaveUnsigned, (RedisModuleIO *, uint64_t))                                                         \
    X(uint64_t, LoadUnsigned, (RedisModuleIO *))                                                               \
    X(void, SaveStringBuffer, (RedisModuleIO *, const char *, size_t))                                         \
    X(char *, LoadStringBuffer, (RedisModuleIO *, size_t *))                                                   \
    X(void, EmitAOF, (RedisModuleIO *, const char *, const char *, ...))                                       \
    X(void, Log, (RedisModuleCtx *, const char *, const char *, ...))                                          \
    X(int, ReplicateVerbatim, (RedisModuleCtx *))                                                              \
    X(int, Replicate, (RedisModuleCtx *, const char *, const char *, ...))                                     \
    X(int, GetContextFlags, (RedisModuleCtx *))                                                                \
    X(RedisModuleBlockedClient *, BlockClient,                                                                 \
      (RedisModuleCtx *, RedisModuleCmdFunc, RedisModuleCmdFunc, void (*)(RedisModuleCtx *, void *), long long)) \
    X(int, UnblockClient, (RedisModuleBlockedClient *, void *))                                                \
    X(void *, GetBlockedClientPrivateData, (RedisModuleCtx *))                                                 \
    X(int, IsKeysPositionRequest, (RedisModuleCtx *))                                                          \
    X(void, KeyAtPos, (RedisModuleCtx *, int))                                                                 \
    X(RedisModuleScanCursor *, ScanCursorCreate, (void))                                                       \
    X(int, Scan, (RedisModuleCtx *, RedisModuleScanCursor *, RedisModuleScanCB, void *))                       \
    X(void, ScanCursorDestroy, (RedisModuleScanCursor *))

#define RM_DECLARE(ret, name, args) extern ret(*RM_##name) args;
RM_API(RM_DECLARE)

/* ---------------------------------------------------------------- ONNX Runtime C API */
typedef struct OrtStatus OrtStatus;
typedef struct OrtEnv OrtEnv;
typedef struct OrtSession OrtSession;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtValue OrtValue;
typedef struct OrtMemoryInfo OrtMemoryInfo;
typedef struct OrtAllocator OrtAllocator;
typedef struct OrtRunOptions OrtRunOptions;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;

typedef struct {
    const void *(*GetApi)(uint32_t version);
    const char *(*GetVersionString)(void);
} OrtApiBase;

enum { ORT_LOGGING_LEVEL_WARNING = 2, ORT_LOGGING_LEVEL_ERROR = 3 };
enum { OrtArenaAllocator = 1 };
enum { OrtMemTypeDefault = 0 };
enum { ORT_SEQUENTIAL = 0 };
/* ONNXTensorElementDataType */
enum {
    ONNX_FLOAT = 1, ONNX_UINT8 = 2, ONNX_INT8 = 3, ONNX_UINT16 = 4, ONNX_INT16 = 5,
    ONNX_INT32 = 6, ONNX_INT64 = 7, ONNX_STRING = 8, ONNX_BOOL = 9, ONNX_FLOAT16 = 10, ONNX_DOUBLE = 11
};

/* slot, return type, name, parameters */
#define ORT_API(X)                                                                                           \
    X(2, const char *, GetErrorMessage, (const OrtStatus *))                                                 \
    X(3, OrtStatus *, CreateEnv, (int, const char *, OrtEnv **))                                            \
    X(8, OrtStatus *, CreateSessionFromArray,                                                                \
      (const OrtEnv *, const void *, size_t, const OrtSessionOptions *, OrtSession **))                      \
    X(9, OrtStatus *, Run,                                                                                   \
      (OrtSession *, const OrtRunOptions *, const char *const *, const OrtValue *const *, size_t,            \
       const char *const *, size_t, OrtValue **))                                                            \
    X(10, OrtStatus *, CreateSessionOptions, (OrtSessionOptions **))                                         \
    X(13, OrtStatus *, SetSessionExecutionMode, (OrtSessionOptions *, int))                                  \
    X(24, OrtStatus *, SetIntraOpNumThreads, (OrtSessionOptions *, int))                                     \
    X(25, OrtStatus *, SetInterOpNumThreads, (OrtSessionOptions *, int))                                     \
    X(30, OrtStatus *, SessionGetInputCount, (const OrtSession *, size_t *))                                 \
    X(31, OrtStatus *, SessionGetOutputCount, (const OrtSession *, size_t *))                                \
    X(36, OrtStatus *, SessionGetInputName, (const OrtSession *, size_t, OrtAllocator *, char **))           \
    X(37, OrtStatus *, SessionGetOutputName, (const OrtSession *, size_t, OrtAllocator *, char **))          \
    X(49, OrtStatus *, CreateTensorWithDataAsOrtValue,                                                       \
      (const OrtMemoryInfo *, void *, size_t, const int64_t *, size_t, int, OrtValue **))                    \
    X(51, OrtStatus *, GetTensorMutableData, (OrtValue *, void **))                                          \
    X(60, OrtStatus *, GetTensorElementType, (const OrtTensorTypeAndShapeInfo *, int *))                     \
    X(61, OrtStatus *, GetDimensionsCount, (const OrtTensorTypeAndShapeInfo *, size_t *))                    \
    X(62, OrtStatus *, GetDimensions, (const OrtTensorTypeAndShapeInfo *, int64_t *, size_t))                \
    X(65, OrtStatus *, GetTensorTypeAndShape, (const OrtValue *, OrtTensorTypeAndShapeInfo **))              \
    X(69, OrtStatus *, CreateCpuMemoryInfo, (int, int, OrtMemoryInfo **))                                   \
    X(76, OrtStatus *, AllocatorFree, (OrtAllocator *, void *))                                              \
    X(78, OrtStatus *, GetAllocatorWithDefaultOptions, (OrtAllocator **))                                    \
    X(92, void, ReleaseEnv, (OrtEnv *))                                                                      \
    X(93, void, ReleaseStatus, (OrtStatus *))                                                                \
    X(94, void, ReleaseMemoryInfo, (OrtMemoryInfo *))                                                        \
    X(95, void, ReleaseSession, (OrtSession *))                                                              \
    X(96, void, ReleaseValue, (OrtValue *))                                                                  \
    X(99, void, ReleaseTensorTypeAndShapeInfo, (OrtTensorTypeAndShapeInfo *))                                \
    X(100, void, ReleaseSessionOptions, (OrtSessionOptions *))                                               \
    X(130, OrtStatus *, AddSessionConfigEntry, (OrtSessionOptions *, const char *, const char *))

#define ORT_DECLARE(slot, ret, name, args) extern ret(*ORT_##name) args;
ORT_API(ORT_DECLARE)
