/* direct_then_cached FILE: reads FILE with O_DIRECT (every read goes to the
 * device), then twice through the page cache: the first buffered pass may
 * fill it, the second (pread64 on its own fd) must find every page there.
 * Prints the fds so the test can tell the calls apart. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CHUNK (256 * 1024)

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE\n", argv[0]);
        return 2;
    }
    void *buf;
    if (posix_memalign(&buf, 4096, CHUNK) != 0)
        return 1;
    int direct = open(argv[1], O_RDONLY | O_DIRECT);
    if (direct < 0) {
        perror("open O_DIRECT");
        return 1;
    }
    off_t off = 0;
    ssize_t n;
    while ((n = pread(direct, buf, CHUNK, off)) > 0)
        off += n;
    int fill = open(argv[1], O_RDONLY);
    while (read(fill, buf, CHUNK) > 0)
        ;
    int cached = open(argv[1], O_RDONLY);
    off = 0;
    while ((n = pread(cached, buf, CHUNK, off)) > 0)
        off += n;
    printf("direct=%d cached=%d\n", direct, cached);
    return 0;
}
