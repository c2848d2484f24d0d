/*
 * cmd_inspect.c — `mold inspect PATH [--json]` (placeholder until the model
 * directory parser lands; keeps the executable linking).
 */
#include <stdio.h>

#include "base/status.h"
#include "commands.h"

int mold_cmd_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "mold inspect: not implemented yet\n");
    return 1;
}
