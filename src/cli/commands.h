/*
 * commands.h — the subcommands of the `mold` executable.
 *
 * Each command lives in its own file src/cli/cmd_<name>.c and has the
 * signature of main() minus the program name (argv[0] is the command name).
 * It returns the process exit code (0 ok, 1 runtime failure, 2 usage error).
 * Commands parse arguments, call the engine and print; they never touch
 * tensors (DESIGN.md principle 7).
 */
#ifndef MOLD_CLI_COMMANDS_H
#define MOLD_CLI_COMMANDS_H

typedef struct mold_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} mold_command;

int mold_cmd_inspect(int argc, char **argv);
int mold_cmd_run(int argc, char **argv);
int mold_cmd_bench(int argc, char **argv);
int mold_cmd_tokenize(int argc, char **argv);
int mold_cmd_synth(int argc, char **argv);
int mold_cmd_quantize(int argc, char **argv);

/* Prints "mold: <message>" for the current error to stderr; returns 1. */
int mold_cli_fail(const char *what);

#endif
