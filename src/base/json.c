/*
 * json.c — jansson behind getters that name the file and field (see json.h).
 */
#include "json.h"

#include <math.h>
#include <string.h>

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

mold_status mold_json_load_file(const char *path, json_t **out) {
    json_error_t e;
    *out = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    if (!*out) {
        if (e.line < 0 || strstr(e.text, "unable to open"))
            return MOLD_ERR(MOLD_E_NOTFOUND, "%s: %s", path, e.text);
        return MOLD_ERR(MOLD_E_FORMAT, "%s: invalid JSON at line %d column %d: %s", path, e.line,
                        e.column, e.text);
    }
    return MOLD_OK;
}

mold_status mold_json_load_buf(const char *buf, size_t len, const char *what, json_t **out) {
    json_error_t e;
    *out = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
    if (!*out)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: invalid JSON at line %d column %d: %s", what, e.line,
                        e.column, e.text);
    return MOLD_OK;
}

/* Finds field; NULL (and MOLD_OK) when absent/null and not required. */
static mold_status lookup(const json_t *obj, const char *field, const char *what, bool required,
                          json_t **v) {
    *v = NULL;
    if (!json_is_object(obj))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: expected an object holding '%s', got %s", what, field,
                        obj ? type_name(obj) : "nothing");
    json_t *x = json_object_get(obj, field);
    if (!x || json_is_null(x)) {
        if (required) return MOLD_ERR(MOLD_E_NOTFOUND, "%s: missing field '%s'", what, field);
        return MOLD_OK;
    }
    *v = x;
    return MOLD_OK;
}

mold_status mold_json_get_int(const json_t *obj, const char *field, const char *what,
                              bool required, int64_t *out) {
    json_t *v;
    MOLD_TRY(lookup(obj, field, what, required, &v));
    if (!v) return MOLD_OK;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return MOLD_OK;
    }
    if (json_is_real(v)) { /* accept 2.0, reject 2.5 */
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 9.0e15) {
            *out = (int64_t)d;
            return MOLD_OK;
        }
    }
    return MOLD_ERR(MOLD_E_FORMAT, "%s: field '%s': expected integer, got %s", what, field,
                    type_name(v));
}

mold_status mold_json_get_num(const json_t *obj, const char *field, const char *what,
                              bool required, double *out) {
    json_t *v;
    MOLD_TRY(lookup(obj, field, what, required, &v));
    if (!v) return MOLD_OK;
    if (!json_is_number(v))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field '%s': expected number, got %s", what, field,
                        type_name(v));
    *out = json_number_value(v);
    return MOLD_OK;
}

mold_status mold_json_get_bool(const json_t *obj, const char *field, const char *what,
                               bool required, bool *out) {
    json_t *v;
    MOLD_TRY(lookup(obj, field, what, required, &v));
    if (!v) return MOLD_OK;
    if (!json_is_boolean(v))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field '%s': expected boolean, got %s", what, field,
                        type_name(v));
    *out = json_is_true(v);
    return MOLD_OK;
}

mold_status mold_json_get_str(const json_t *obj, const char *field, const char *what,
                              bool required, const char **out) {
    json_t *v;
    MOLD_TRY(lookup(obj, field, what, required, &v));
    if (!v) return MOLD_OK;
    if (!json_is_string(v))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field '%s': expected string, got %s", what, field,
                        type_name(v));
    *out = json_string_value(v);
    return MOLD_OK;
}

mold_status mold_json_get_child(const json_t *obj, const char *field, const char *what,
                                bool required, json_type type, json_t **out) {
    json_t *v;
    MOLD_TRY(lookup(obj, field, what, required, &v));
    if (!v) return MOLD_OK;
    if (json_typeof(v) != type)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field '%s': expected %s, got %s", what, field,
                        type == JSON_OBJECT ? "object" : "array", type_name(v));
    *out = v;
    return MOLD_OK;
}

static mold_status get_array(const json_t *obj, const char *field, const char *what,
                             bool required, size_t cap, json_t **arr, size_t *n_read) {
    *arr = NULL;
    MOLD_TRY(mold_json_get_child(obj, field, what, required, JSON_ARRAY, arr));
    if (!*arr) return MOLD_OK;
    size_t n = json_array_size(*arr);
    if (n > cap)
        return MOLD_ERR(MOLD_E_RANGE, "%s: field '%s': expected at most %zu values, got %zu",
                        what, field, cap, n);
    if (n_read) *n_read = n;
    return MOLD_OK;
}

mold_status mold_json_get_int_array(const json_t *obj, const char *field, const char *what,
                                    bool required, int64_t *out, size_t cap, size_t *n_read) {
    json_t *arr;
    MOLD_TRY(get_array(obj, field, what, required, cap, &arr, n_read));
    if (!arr) return MOLD_OK;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v))
            return MOLD_ERR(MOLD_E_FORMAT, "%s: field '%s'[%zu]: expected integer, got %s", what,
                            field, i, type_name(v));
        out[i] = (int64_t)json_integer_value(v);
    }
    return MOLD_OK;
}

mold_status mold_json_get_num_array(const json_t *obj, const char *field, const char *what,
                                    bool required, double *out, size_t cap, size_t *n_read) {
    json_t *arr;
    MOLD_TRY(get_array(obj, field, what, required, cap, &arr, n_read));
    if (!arr) return MOLD_OK;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_number(v))
            return MOLD_ERR(MOLD_E_FORMAT, "%s: field '%s'[%zu]: expected number, got %s", what,
                            field, i, type_name(v));
        out[i] = json_number_value(v);
    }
    return MOLD_OK;
}
