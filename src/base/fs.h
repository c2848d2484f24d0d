/*
 * fs.h — read-only file mapping and atomic writes.
 *
 * Model files are mapped read-only (MAP_PRIVATE, PROT_READ) so weights are
 * shared with the page cache and never copied on the CPU path. Outputs go to
 * "<path>.tmp.<pid>" and are renamed into place, so a crash never leaves a
 * half-written file under the final name.
 */
#ifndef MOLD_BASE_FS_H
#define MOLD_BASE_FS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct mold_mmap {
    const uint8_t *data; /* NULL for an empty file */
    uint64_t size;
    char *path;          /* owned copy, for error messages */
} mold_mmap;

/* Maps the whole file read-only. On failure *m is zeroed. */
mold_status mold_mmap_open(const char *path, mold_mmap *m);
void mold_mmap_close(mold_mmap *m); /* safe on a zeroed struct */

/* Reads a whole (small) file into a malloc'd NUL-terminated buffer. */
mold_status mold_file_read_all(const char *path, char **out, size_t *out_len);

/* Writes bytes to path atomically (temp file, fsync, rename). */
mold_status mold_file_write_atomic(const char *path, const void *data, size_t len);

/* Streaming atomic writer for large outputs. */
typedef struct mold_atomic_file mold_atomic_file;
mold_status mold_atomic_open(const char *path, mold_atomic_file **out);
mold_status mold_atomic_write(mold_atomic_file *f, const void *data, size_t len);
mold_status mold_atomic_commit(mold_atomic_file *f); /* renames and frees */
void mold_atomic_abort(mold_atomic_file *f);         /* removes temp, frees; NULL ok */

int mold_path_exists(const char *path);
int mold_path_is_dir(const char *path);
/* Joins a and b with one '/', malloc'd. NULL on OOM. */
char *mold_path_join(const char *a, const char *b);

#endif
