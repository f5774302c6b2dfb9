/* fdpaths.c — known fd-table changes for the fd -> path e2e test.
 *
 * usage: fdpaths DIR   (DIR holds files a, b and sub/c; the program chdirs
 * into DIR first, so the relative opens are resolved against its cwd).
 *
 * Each step reads or writes a distinct size, so the test can tell the calls
 * apart: size 11 on a, then a closed and its fd reused for b (size 12), b
 * dup'd (13 on the dup), dup2'd onto fd 40 (14), the dirfd-relative open of
 * sub/c (15), a pipe (16 written, 16 read), a socketpair (17 sent, 17 read),
 * and a read of stdin, which the program inherited (18).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[64];

static void must(int ok, const char *what) {
    if (!ok) {
        perror(what);
        exit(1);
    }
}

int main(int argc, char **argv) {
    must(argc == 2, "usage: fdpaths DIR");
    must(chdir(argv[1]) == 0, "chdir");
    int a = open("a", O_RDONLY);
    must(a >= 0, "open a");
    must(read(a, buf, 11) >= 0, "read a");
    must(close(a) == 0, "close a");
    int b = openat(AT_FDCWD, "b", O_RDONLY);
    must(b == a, "b reuses a's fd");
    must(read(b, buf, 12) >= 0, "read b");
    int d = dup(b);
    must(d >= 0 && pread(d, buf, 13, 0) >= 0, "dup");
    must(dup2(b, 40) == 40 && pread(40, buf, 14, 0) >= 0, "dup2");
    int dir = open("sub", O_RDONLY | O_DIRECTORY);
    int c = openat(dir, "c", O_RDONLY);
    must(c >= 0 && read(c, buf, 15) >= 0, "openat sub/c");
    int p[2];
    must(pipe(p) == 0, "pipe");
    must(write(p[1], buf, 16) == 16 && read(p[0], buf, 16) == 16, "pipe io");
    int s[2];
    must(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0, "socketpair");
    must(send(s[0], buf, 17, 0) == 17 && recv(s[1], buf, 17, 0) == 17, "socketpair io");
    must(read(0, buf, 18) >= 0, "read stdin");
    printf("%d %d %d %d %d %d %d %d %d\n", a, d, dir, c, p[0], p[1], s[0], s[1], 40);
    return 0;
}
