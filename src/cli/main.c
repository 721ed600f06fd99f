/*
 * The babymamba command-line tool: a table of subcommands and the dispatch to them.
 */
#include <stdio.h>
#include <string.h>

#include "cli_common.h"
#include "commands.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"inspect", cmd_inspect, "print a model's architecture, size and input specification"},
    {"infer", cmd_infer, "classify the windows of a CSV or text file"},
    {"bench", cmd_bench, "measure inference latency and throughput on random input"},
#ifdef BM_CLI_HAVE_PREPARE
    {"prepare", cmd_prepare, "build a labelled window data file from the HAPT recordings"},
#endif
#ifdef BM_CLI_HAVE_EVAL
    {"eval", cmd_eval, "score a model on a data file: accuracy, macro-F1, confusion matrix"},
#endif
#ifdef BM_CLI_HAVE_REPLAY
    {"replay", cmd_replay, "stream a recording to babymambad over MQTT or HTTP"},
#endif
};

static void print_usage(FILE *out)
{
    fprintf(out, "usage: babymamba COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        fprintf(out, "  %-8s  %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(out, "\n'babymamba COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (cli_is_help(argv[1])) {
        print_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("babymamba %s\n", BM_VERSION);
        return CLI_EXIT_OK;
    }

    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].run(argc - 1, argv + 1);
        }
    }

    fprintf(stderr, "babymamba: unknown command '%s'\n\n", argv[1]);
    print_usage(stderr);
    return CLI_EXIT_USAGE;
}
