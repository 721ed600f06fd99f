/*
 * The subcommands of the babymamba tool. Each takes the arguments after its name
 * (argv[0] is the subcommand) and returns the process exit status.
 */
#ifndef BM_CLI_COMMANDS_H
#define BM_CLI_COMMANDS_H

int cmd_inspect(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_prepare(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_replay(int argc, char **argv);

#endif
