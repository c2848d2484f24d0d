/*
 * main.c — `mold` entry point: dispatches to the subcommands in commands.h.
 */
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/status.h"
#include "commands.h"

/* Add new commands here (one line each) and in commands.h. */
static const mold_command COMMANDS[] = {
    {"run", mold_cmd_run, "generate images from a prompt"},
    {"bench", mold_cmd_bench, "time each stage of a generation (load, encode, step, decode)"},
    {"inspect", mold_cmd_inspect, "show components, tensors and configs of a model"},
    {"tokenize", mold_cmd_tokenize, "print the token ids of a text (Qwen2 tokenizer)"},
    {"synth", mold_cmd_synth, "write a model with random weights at the real shapes"},
    {"quantize", mold_cmd_quantize, "write a quantized GGUF of a transformer or text encoder"},
};
#define N_COMMANDS (sizeof(COMMANDS) / sizeof(COMMANDS[0]))

int mold_cli_fail(const char *what) {
    const char *msg = mold_error_message();
    if (what && *what)
        fprintf(stderr, "mold: %s: %s\n", what, msg && *msg ? msg : "failed");
    else
        fprintf(stderr, "mold: %s\n", msg && *msg ? msg : "failed");
    return 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: mold <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\nmold <command> --help for the options of one command.\n");
}

int main(int argc, char **argv) {
    mold_log_init_from_env();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("mold %s\n", MOLD_VERSION);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name))
            return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "mold: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
