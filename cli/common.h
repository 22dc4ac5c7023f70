// common.h — what every pyrmap subcommand includes: the shared options
// (options.h), writing results (output.h), signals (signals.h) and the exit
// codes (exit_codes.h).
#pragma once

#include "error.h"
#include "exit_codes.h"
#include "options.h"
#include "output.h"
#include "run.h"
#include "signals.h"
