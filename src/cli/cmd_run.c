/*
 * cmd_run.c — `mold run`: generate images from a prompt, in process.
 *
 *   mold run [MODEL] PROMPT [-n TEXT] [--width W] [--height H] [--steps N]
 *            [--guidance G] [--seed S] [--batch K] [-o FILE|-] [--no-metadata]
 *            [--noise FILE] [--dump DIR] [--threads N] [--device cpu|cuda]
 *            [--transformer P] [--text-encoder P] [--vae P] [--tokenizer P]
 *            [--vae-tile T] [--cfg-batch 1|2] [--memory-budget SIZE]
 *
 * MODEL defaults to $MOLD_MODEL. The seed is random when not given and is
 * always printed. Progress goes to stderr (a bar on a terminal, plain lines
 * otherwise), then a per-stage timing summary.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "mold/mold.h"

typedef struct run_args {
    mold_engine_options eo;
    mold_request req;
    const char *output;
    int batch;
    bool has_seed, metadata;
} run_args;

static void usage(FILE *f) {
    fprintf(f,
            "usage: mold run [MODEL] PROMPT [options]\n"
            "  MODEL                    model directory (default: $MOLD_MODEL)\n"
            "  -n, --negative-prompt T  negative prompt (default \" \")\n"
            "  --width W, --height H    image size, multiples of 16, <= 1.8 MP (default 1328x1328)\n"
            "  --steps N                denoising steps 1..100 (default 50)\n"
            "  --guidance G             true CFG scale 0..100 (default 4; <= 1 disables CFG)\n"
            "  --seed S                 seed (default random; always printed)\n"
            "  --batch K                K images with seeds S, S+1, ... (default 1)\n"
            "  -o, --output FILE|-      output PNG (default mold-MODEL-UNIXMS[-i].png; - = stdout)\n"
            "  --no-metadata            do not embed generation metadata in the PNG\n"
            "  --noise FILE             initial latents from FILE (tensor noise_packed [1,N,64])\n"
            "  --dump DIR               write intermediates to DIR/trace.safetensors\n"
            "  --threads N              CPU threads (default all cores)\n"
            "  --device cpu|cuda        compute device (default cpu)\n"
            "  --transformer P, --text-encoder P, --vae P, --tokenizer P\n"
            "                           component overrides (safetensors, index, dir or .gguf)\n"
            "  --vae-tile T             decode in tiles of T latent pixels (default: planned)\n"
            "  --cfg-batch 1|2          CFG as two transformer passes or one batch of two\n"
            "                           (default: planned from memory)\n"
            "  --memory-budget SIZE     plan as if the device had SIZE bytes (K/M/G suffixes)\n");
}

/* Strict integer parse; the message names the option. */
static int parse_int(const char *opt, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "mold run: %s: expected an integer in %lld..%lld, got '%s'\n", opt, lo,
                hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_float(const char *opt, const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end) {
        fprintf(stderr, "mold run: %s: expected a number, got '%s'\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* "24G", "512M", "1000000": bytes with an optional binary K/M/G/T suffix. */
static int parse_size(const char *opt, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    int shift = 0;
    if (end != s && *end) {
        shift = *end == 'K' || *end == 'k' ? 10 : *end == 'M' || *end == 'm' ? 20
              : *end == 'G' || *end == 'g' ? 30 : *end == 'T' || *end == 't' ? 40 : -1;
        if (shift >= 0) end++;
    }
    /* below one byte would truncate to 0, which means "no budget" */
    if (errno || end == s || *end || shift < 0 || !(v * (double)(1ull << shift) >= 1.0) ||
        v * (double)(1ull << shift) > 1e15) {
        fprintf(stderr, "mold run: %s: expected a size like 24G, 512M or a byte count, got '%s'\n",
                opt, s);
        return -1;
    }
    *out = (uint64_t)(v * (double)(1ull << shift));
    return 0;
}

static uint64_t random_seed(void) {
    uint64_t s = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &s, sizeof s) != (ssize_t)sizeof s) s = 0;
        close(fd);
    }
    if (!s) s = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    return s & ((1ull << 53) - 1); /* exact in JSON doubles too */
}

/* Parses argv into a; returns 0, or the exit code (2) on a usage error. */
static int parse_args(int argc, char **argv, run_args *a) {
    const char *pos[2] = {NULL, NULL};
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long iv;
#define NEED_VALUE()                                                       \
    do {                                                                   \
        if (!v) {                                                          \
            fprintf(stderr, "mold run: %s: missing value\n", o);           \
            return 2;                                                      \
        }                                                                  \
        i++;                                                               \
    } while (0)
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout);
            return -1;
        } else if (!strcmp(o, "-n") || !strcmp(o, "--negative-prompt")) {
            NEED_VALUE();
            a->req.negative_prompt = v;
        } else if (!strcmp(o, "--width")) {
            NEED_VALUE();
            if (parse_int(o, v, 1, 1 << 20, &iv)) return 2;
            a->req.width = (int)iv;
        } else if (!strcmp(o, "--height")) {
            NEED_VALUE();
            if (parse_int(o, v, 1, 1 << 20, &iv)) return 2;
            a->req.height = (int)iv;
        } else if (!strcmp(o, "--steps")) {
            NEED_VALUE();
            if (parse_int(o, v, -1000000, 1000000, &iv)) return 2;
            a->req.steps = (int)iv;
        } else if (!strcmp(o, "--guidance")) {
            NEED_VALUE();
            if (parse_float(o, v, &a->req.guidance)) return 2;
        } else if (!strcmp(o, "--seed")) {
            NEED_VALUE();
            if (parse_int(o, v, 0, (1ll << 53) - 1, &iv)) return 2;
            a->req.seed = (uint64_t)iv;
            a->has_seed = true;
        } else if (!strcmp(o, "--batch")) {
            NEED_VALUE();
            if (parse_int(o, v, 1, 64, &iv)) return 2;
            a->batch = (int)iv;
        } else if (!strcmp(o, "-o") || !strcmp(o, "--output")) {
            NEED_VALUE();
            a->output = v;
        } else if (!strcmp(o, "--no-metadata")) {
            a->metadata = false;
        } else if (!strcmp(o, "--noise")) {
            NEED_VALUE();
            a->req.noise_path = v;
        } else if (!strcmp(o, "--dump")) {
            NEED_VALUE();
            a->req.dump_dir = v;
        } else if (!strcmp(o, "--threads")) {
            NEED_VALUE();
            if (parse_int(o, v, 1, 256, &iv)) return 2;
            a->eo.n_threads = (int)iv;
        } else if (!strcmp(o, "--device")) {
            NEED_VALUE();
            if (!strcmp(v, "cpu")) a->eo.device = MOLD_DEVICE_CPU;
            else if (!strcmp(v, "cuda")) a->eo.device = MOLD_DEVICE_CUDA;
            else {
                fprintf(stderr, "mold run: --device: expected cpu or cuda, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(o, "--transformer")) {
            NEED_VALUE();
            a->eo.transformer_path = v;
        } else if (!strcmp(o, "--text-encoder")) {
            NEED_VALUE();
            a->eo.text_encoder_path = v;
        } else if (!strcmp(o, "--vae")) {
            NEED_VALUE();
            a->eo.vae_path = v;
        } else if (!strcmp(o, "--tokenizer")) {
            NEED_VALUE();
            a->eo.tokenizer_path = v;
        } else if (!strcmp(o, "--vae-tile")) {
            NEED_VALUE();
            if (parse_int(o, v, 0, 4096, &iv)) return 2;
            a->req.vae_tile = (int)iv;
        } else if (!strcmp(o, "--cfg-batch")) {
            NEED_VALUE();
            if (parse_int(o, v, 1, 2, &iv)) return 2;
            a->req.cfg_batch = (int)iv;
        } else if (!strcmp(o, "--memory-budget")) {
            NEED_VALUE();
            if (parse_size(o, v, &a->eo.memory_budget)) return 2;
        } else if (o[0] == '-' && o[1] != 0) {
            fprintf(stderr, "mold run: unknown option '%s' (mold run --help)\n", o);
            return 2;
        } else {
            if (n_pos == 2) {
                fprintf(stderr, "mold run: too many arguments ('%s'); quote the prompt\n", o);
                return 2;
            }
            pos[n_pos++] = o;
        }
#undef NEED_VALUE
    }
    if (n_pos == 0) {
        fprintf(stderr, "mold run: missing PROMPT\n");
        usage(stderr);
        return 2;
    }
    a->req.prompt = pos[n_pos - 1];
    a->eo.model_dir = n_pos == 2 ? pos[0] : getenv("MOLD_MODEL");
    if (!a->eo.model_dir && !(a->eo.transformer_path && a->eo.text_encoder_path && a->eo.vae_path)) {
        fprintf(stderr, "mold run: no model: pass MODEL (a model directory) or set MOLD_MODEL\n");
        return 2;
    }
    return 0;
}

/* ---- progress ---- */

typedef struct progress_state {
    bool tty;
    int index, batch;
} progress_state;

static void on_progress(const mold_event *ev, void *ud) {
    progress_state *p = ud;
    if (ev->kind == MOLD_EV_STEP) {
        if (p->tty) {
            int width = 30, filled = ev->step * width / (ev->n_steps ? ev->n_steps : 1);
            fprintf(stderr, "\r  denoise [%.*s%*s] %d/%d", filled,
                    "##############################", width - filled, "", ev->step, ev->n_steps);
            if (ev->step == ev->n_steps) fputc('\n', stderr);
        } else {
            fprintf(stderr, "  denoise step %d/%d\n", ev->step, ev->n_steps);
        }
    } else if (ev->kind == MOLD_EV_STAGE_DONE) {
        fprintf(stderr, "  %s done in %.0f ms\n", ev->stage, ev->elapsed_ms);
    } else if (ev->kind == MOLD_EV_CACHE_HIT) {
        fprintf(stderr, "  encode: prompt cache hit\n");
    }
    fflush(stderr);
}

/* "mold-<model>-<unix_ms>[-i].png", or FILE with -i before the extension. */
static void output_name(const run_args *a, const char *model, long long unix_ms, int i,
                        char *buf, size_t cap) {
    if (a->output) {
        if (a->batch == 1 || !strcmp(a->output, "-")) {
            snprintf(buf, cap, "%s", a->output);
            return;
        }
        const char *dot = strrchr(a->output, '.');
        const char *slash = strrchr(a->output, '/');
        if (dot && (!slash || dot > slash))
            snprintf(buf, cap, "%.*s-%d%s", (int)(dot - a->output), a->output, i, dot);
        else
            snprintf(buf, cap, "%s-%d", a->output, i);
        return;
    }
    if (a->batch == 1)
        snprintf(buf, cap, "mold-%s-%lld.png", model, unix_ms);
    else
        snprintf(buf, cap, "mold-%s-%lld-%d.png", model, unix_ms, i);
}

int mold_cmd_run(int argc, char **argv) {
    run_args a;
    memset(&a, 0, sizeof a);
    a.eo = mold_engine_options_default();
    a.req = mold_request_default();
    a.batch = 1;
    a.metadata = true;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    if (!a.has_seed) a.req.seed = random_seed();
    if (mold_request_validate(&a.req) != 0) {
        fprintf(stderr, "mold run: %s\n", mold_last_error());
        return 2;
    }
    if (a.batch > 1 && a.output && !strcmp(a.output, "-")) {
        fprintf(stderr, "mold run: -o -: stdout holds one image; use --batch 1\n");
        return 2;
    }
    a.eo.keep_resident = a.batch > 1; /* the next image needs the same weights */
    mold_engine *e;
    if (mold_engine_open(&a.eo, &e) != 0) return mold_cli_fail("run");
    progress_state ps = {isatty(STDERR_FILENO) != 0, 0, a.batch};
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long unix_ms = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    uint64_t seed0 = a.req.seed;
    rc = 0;
    for (int i = 0; i < a.batch && rc == 0; i++) {
        mold_request r = a.req;
        r.seed = seed0 + (uint64_t)i;
        fprintf(stderr, "mold: %s, %dx%d, %d steps, guidance %g, seed %" PRIu64 "%s\n",
                mold_engine_model_name(e), r.width, r.height, r.steps, (double)r.guidance, r.seed,
                a.batch > 1 ? "" : "");
        ps.index = i;
        mold_result res;
        if (mold_generate(e, &r, on_progress, &ps, &res) != 0) {
            rc = mold_cli_fail("run");
            break;
        }
        char path[4096];
        output_name(&a, mold_engine_model_name(e), unix_ms, i, path, sizeof path);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (mold_save_png(e, &r, &res, path, a.metadata) != 0) {
            rc = mold_cli_fail("save");
        } else {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double save_ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
            fprintf(stderr, "  times: load %.0f ms, encode %.0f ms, denoise %.0f ms, decode %.0f ms, "
                    "save %.0f ms\n", res.times.load_ms, res.times.encode_ms, res.times.denoise_ms,
                    res.times.decode_ms, save_ms);
            fprintf(stderr, "seed: %" PRIu64 "\n", r.seed);
            if (strcmp(path, "-")) printf("%s\n", path);
        }
        mold_result_free(&res);
    }
    mold_engine_close(e);
    return rc;
}
