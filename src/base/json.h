/*
 * json.h — the thin wrapper over jansson used by every JSON reader in mold.
 *
 * Why a wrapper: every getter takes the file name and the field path so that a
 * missing or mistyped field produces "transformer/config.json: field
 * 'num_layers': expected integer, got string" and nothing else has to format
 * such messages. Values are jansson's json_t, borrowed from the document.
 */
#ifndef MOLD_BASE_JSON_H
#define MOLD_BASE_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Parses a file / buffer. The error names `what` (usually the path) with line
 * and column. Caller frees with json_decref(). */
mold_status mold_json_load_file(const char *path, json_t **out);
mold_status mold_json_load_buf(const char *buf, size_t len, const char *what, json_t **out);

/* Field getters: `what` is the file (or context) for messages. `required`
 * false leaves *out unchanged when the field is absent (or null). */
mold_status mold_json_get_int(const json_t *obj, const char *field, const char *what,
                              bool required, int64_t *out);
mold_status mold_json_get_num(const json_t *obj, const char *field, const char *what,
                              bool required, double *out);
mold_status mold_json_get_bool(const json_t *obj, const char *field, const char *what,
                               bool required, bool *out);
/* *out borrows the string from the document. */
mold_status mold_json_get_str(const json_t *obj, const char *field, const char *what,
                              bool required, const char **out);
/* Object or array child (borrowed); type is JSON_OBJECT or JSON_ARRAY. */
mold_status mold_json_get_child(const json_t *obj, const char *field, const char *what,
                                bool required, json_type type, json_t **out);
/* Fixed-length array of integers / numbers: n_out is the capacity, *n_read the count. */
mold_status mold_json_get_int_array(const json_t *obj, const char *field, const char *what,
                                    bool required, int64_t *out, size_t cap, size_t *n_read);
mold_status mold_json_get_num_array(const json_t *obj, const char *field, const char *what,
                                    bool required, double *out, size_t cap, size_t *n_read);

#endif
