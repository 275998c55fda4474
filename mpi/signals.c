// Signal handling for graceful stop-and-requeue (see signals.h).
#include "mpi/signals.h"

#include <signal.h>
#include <string.h>

#include "common/check.h"

static volatile sig_atomic_t g_signal = 0;

// ----------------------------------------------------------------------------

static void on_signal(int sig) {
    if (g_signal == 0) g_signal = sig;
}

void signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; // a signal never turns a blocking MPI or file call into an error
    const int sigs[] = {SIGTERM, SIGUSR1, SIGINT};
    for (int i = 0; i < 3; i++) sigaction(sigs[i], &sa, NULL);
}

int signals_pending(void) { return (int)g_signal; }

int signals_agree(MPI_Comm comm) {
    int mine = (int)g_signal, any = 0;
    mpiCheck(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, comm));
    return any;
}
