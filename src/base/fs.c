/*
 * fs.c — read-only mmap, whole-file reads and atomic writes (see fs.h).
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

mold_status mold_mmap_open(const char *path, mold_mmap *m) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return MOLD_ERR(errno == ENOENT ? MOLD_E_NOTFOUND : MOLD_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return MOLD_ERR(MOLD_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return MOLD_ERR(MOLD_E_IO, "%s: not a regular file", path);
    }
    void *p = NULL;
    if (sb.st_size > 0) {
        p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return MOLD_ERR(MOLD_E_IO, "%s: mmap of %lld bytes failed: %s", path,
                            (long long)sb.st_size, strerror(e));
        }
    }
    close(fd);
    m->path = strdup(path);
    if (!m->path) {
        if (p) munmap(p, (size_t)sb.st_size);
        return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
    }
    m->data = p;
    m->size = (uint64_t)sb.st_size;
    return MOLD_OK;
}

void mold_mmap_close(mold_mmap *m) {
    if (!m) return;
    if (m->data) munmap((void *)m->data, (size_t)m->size);
    free(m->path);
    memset(m, 0, sizeof *m);
}

mold_status mold_file_read_all(const char *path, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return MOLD_ERR(errno == ENOENT ? MOLD_E_NOTFOUND : MOLD_E_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
        if (cap - len - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory reading file", path);
    if (err) {
        free(buf);
        return MOLD_ERR(MOLD_E_IO, "%s: read error", path);
    }
    buf[len] = 0;
    *out = buf;
    if (out_len) *out_len = len;
    return MOLD_OK;
}

struct mold_atomic_file {
    FILE *f;
    char *path;
    char *tmp;
};

mold_status mold_atomic_open(const char *path, mold_atomic_file **out) {
    *out = NULL;
    mold_atomic_file *a = calloc(1, sizeof *a);
    size_t n = strlen(path) + 32;
    if (!a || !(a->path = strdup(path)) || !(a->tmp = malloc(n))) {
        if (a) { free(a->path); free(a); }
        return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
    }
    snprintf(a->tmp, n, "%s.tmp.%d", path, (int)getpid());
    a->f = fopen(a->tmp, "wb");
    if (!a->f) {
        mold_status st = MOLD_ERR(MOLD_E_IO, "%s: cannot create: %s", a->tmp, strerror(errno));
        free(a->tmp); free(a->path); free(a);
        return st;
    }
    *out = a;
    return MOLD_OK;
}

mold_status mold_atomic_write(mold_atomic_file *a, const void *data, size_t len) {
    if (len && fwrite(data, 1, len, a->f) != len)
        return MOLD_ERR(MOLD_E_IO, "%s: write failed: %s", a->tmp, strerror(errno));
    return MOLD_OK;
}

void mold_atomic_abort(mold_atomic_file *a) {
    if (!a) return;
    if (a->f) fclose(a->f);
    unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    free(a);
}

mold_status mold_atomic_commit(mold_atomic_file *a) {
    mold_status st = MOLD_OK;
    if (fflush(a->f) != 0 || fsync(fileno(a->f)) != 0)
        st = MOLD_ERR(MOLD_E_IO, "%s: flush failed: %s", a->tmp, strerror(errno));
    if (fclose(a->f) != 0 && st == MOLD_OK)
        st = MOLD_ERR(MOLD_E_IO, "%s: close failed: %s", a->tmp, strerror(errno));
    a->f = NULL;
    if (st == MOLD_OK && rename(a->tmp, a->path) != 0)
        st = MOLD_ERR(MOLD_E_IO, "%s: rename to %s failed: %s", a->tmp, a->path, strerror(errno));
    if (st != MOLD_OK) unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    free(a);
    return st;
}

mold_status mold_file_write_atomic(const char *path, const void *data, size_t len) {
    mold_atomic_file *a;
    MOLD_TRY(mold_atomic_open(path, &a));
    mold_status st = mold_atomic_write(a, data, len);
    if (st != MOLD_OK) {
        mold_atomic_abort(a);
        return st;
    }
    return mold_atomic_commit(a);
}

int mold_path_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

int mold_path_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

char *mold_path_join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    while (la > 1 && a[la - 1] == '/') la--;
    char *p = malloc(la + lb + 2);
    if (!p) return NULL;
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}
