// Parent-side helpers around libcap. Never called in the child.
#include "cberth.h"

#include <sys/capability.h>

int cb_cap_from_name(const char *name) {
    cap_value_t v;
    return cap_from_name(name, &v) == 0 ? (int)v : -1;
}

int cb_cap_last(void) {
    // cap_max_bits() asks the running kernel, not the headers Berth was built with.
    return (int)cap_max_bits() - 1;
}
