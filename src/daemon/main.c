/*
 * babymambad's entry point: command-line parsing, --check-config, and the daemon's run.
 *
 * Flags that set a config key (--model, --mqtt, --http, --log-level) become overrides that
 * apply over the config file at start and at every reload, so the command line always wins.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "babymamba/model.h"
#include "daemon.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: babymambad [options]\n"
                 "\n"
                 "Serves a BabyMamba-HAR model: sensor samples in over MQTT and HTTP, activity\n"
                 "events out over MQTT, status over a REST API.\n"
                 "\n"
                 "  --config FILE      JSON config file (docs/daemon.md lists every key)\n"
                 "  --model FILE       model file; sets 'model'\n"
                 "  --mqtt URI         broker URI such as tcp://127.0.0.1:1883, or none; sets "
                 "'mqtt.uri'\n"
                 "  --http ADDR:PORT   HTTP listen address, or none; sets 'http.listen'\n"
                 "  --log-level LEVEL  error, warn, info or debug; sets 'log.level'\n"
                 "  --set KEY=VALUE    sets any config key\n"
                 "  --check-config     validate the config, print the effective values and exit\n"
                 "  --version          print the version and exit\n"
                 "  --help             print this help and exit\n");
}

/* Loads the configured model as the daemon would, so --check-config also catches a missing,
 * corrupt or incompatible model file. Returns 0 when it loads. */
static int check_model(const char *path)
{
    bm_model *model = NULL;
    bm_error error;
    bm_error_clear(&error);
    if (bm_model_load(path, &model, &error) != BM_OK) {
        fprintf(stderr, "babymambad: invalid configuration: key 'model': %s\n", error.message);
        return -1;
    }
    bm_model_destroy(model);
    return 0;
}

int main(int argc, char **argv)
{
    enum {
        OPT_CONFIG = 256,
        OPT_MODEL,
        OPT_MQTT,
        OPT_HTTP,
        OPT_LOG_LEVEL,
        OPT_SET,
        OPT_CHECK,
        OPT_VERSION,
        OPT_HELP
    };
    static const struct option options[] = {
        {"config", required_argument, NULL, OPT_CONFIG},
        {"model", required_argument, NULL, OPT_MODEL},
        {"mqtt", required_argument, NULL, OPT_MQTT},
        {"http", required_argument, NULL, OPT_HTTP},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"set", required_argument, NULL, OPT_SET},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };

    log_init(LOG_LEVEL_INFO);

    /* Every flag can at most add one override, so argc bounds their number. */
    daemon_override *overrides = calloc((size_t)argc + 1, sizeof *overrides);
    if (overrides == NULL)
        return 1;
    int override_count = 0;
    const char *config_path = NULL;
    int check_only = 0;

    int option;
    while ((option = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (option) {
        case OPT_CONFIG:
            config_path = optarg;
            break;
        case OPT_MODEL:
            overrides[override_count++] = (daemon_override){"model", optarg};
            break;
        case OPT_MQTT:
            overrides[override_count++] = (daemon_override){"mqtt.uri", optarg};
            break;
        case OPT_HTTP:
            overrides[override_count++] = (daemon_override){"http.listen", optarg};
            break;
        case OPT_LOG_LEVEL:
            overrides[override_count++] = (daemon_override){"log.level", optarg};
            break;
        case OPT_SET: {
            char *equals = strchr(optarg, '=');
            if (equals == NULL) {
                fprintf(stderr, "babymambad: --set %s: expected KEY=VALUE\n", optarg);
                free(overrides);
                return 2;
            }
            *equals = '\0';
            overrides[override_count++] = (daemon_override){optarg, equals + 1};
            break;
        }
        case OPT_CHECK:
            check_only = 1;
            break;
        case OPT_VERSION:
            printf("babymambad %s\n", BABYMAMBAD_VERSION);
            free(overrides);
            return 0;
        case OPT_HELP:
            usage(stdout);
            free(overrides);
            return 0;
        default:
            usage(stderr);
            free(overrides);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "babymambad: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        free(overrides);
        return 2;
    }

    int status;
    if (check_only) {
        cfg_config config;
        char errors[CFG_ERRORS_SIZE];
        if (daemon_load_config(&config, config_path, overrides, override_count, errors,
                               sizeof errors) != 0) {
            fprintf(stderr, "babymambad: invalid configuration%s%s:\n%s",
                    config_path != NULL ? " in " : "", config_path != NULL ? config_path : "",
                    errors);
            status = 2;
        } else if (check_model(config.model_path) != 0) {
            status = 2;
        } else {
            char *text = cfg_to_json(&config);
            printf("%s\n", text != NULL ? text : "{}");
            free(text);
            fprintf(stderr, "babymambad: configuration is valid\n");
            status = 0;
        }
        cfg_deinit(&config);
    } else {
        status = daemon_run(config_path, overrides, override_count);
    }

    free(overrides);
    return status;
}
