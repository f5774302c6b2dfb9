/* mmap_reader.c — reads FILE through a mapping: drops its pages from the
 * page cache (after writing them back), maps it with MADV_RANDOM (no readahead, no fault-around) and
 * touches one byte in each of 23 pages 1 MiB apart: 23 major page faults,
 * each a wait for the disk, and no read call. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    off_t len = lseek(fd, 0, SEEK_END);
    if (len < (23L << 20)) { fprintf(stderr, "file too small\n"); return 1; }
    fsync(fd); /* dirty pages stay cached: write them back first */
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    volatile unsigned char *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) { perror("mmap"); return 1; }
    madvise((void *)m, len, MADV_RANDOM);
    unsigned sum = 0;
    for (int i = 0; i < 23; i++)
        sum += m[(long)i << 20];
    printf("{\"sum\": %u, \"addr\": %lu, \"len\": %ld}\n", sum, (unsigned long)m, (long)len);
    return 0;
}
