/* Prints this process's session keyring as "SERIAL DESCRIPTION LABEL" (serial in hex,
   KEYCTL_DESCRIBE's "type;uid;gid;perm;name", the keyring's LSM label or "-"), without
   creating one. Raw keyctl(2): busybox has no keyctl. Built static by the tests. */
#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(void) {
    long id = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0);
    char desc[256] = "?", label[256] = "-";
    if (id >= 0) {
        if (syscall(SYS_keyctl, 6 /* KEYCTL_DESCRIBE */, id, desc, sizeof desc - 1) < 0) desc[0] = '?', desc[1] = 0;
        if (syscall(SYS_keyctl, 17 /* KEYCTL_GET_SECURITY */, id, label, sizeof label - 1) <= 0 || !label[0])
            label[0] = '-', label[1] = 0;
    }
    printf("%lx %s %s\n", id, desc, label);
    return id >= 0 ? 0 : 1;
}
