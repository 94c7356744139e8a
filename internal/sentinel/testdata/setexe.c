// SPDX-License-Identifier: GPL-2.0
// setexe [-m] EXE TARGET [SECONDS [create]]: the exe-file swap of a root
// attacker. The kernel lets a process replace its exe_file (prctl
// PR_SET_MM_EXE_FILE, or with -m PR_SET_MM_MAP and its exe_fd) only once
// its own image is no longer mapped, so this program copies its image to
// anonymous memory, continues there, unmaps the original, and then
// switches its exe_file to EXE (opened read-only). After SECONDS
// (optional) it opens TARGET for writing (creating it with "create") and
// writes "pwned". It prints the
// result of every step: "munmap=R prctl=R open=R write=R" (R: the return
// value, -errno on failure).
//
// Freestanding Linux on x86-64 or arm64: no libc, position-independent
// code, so that the copied image runs at its new address.
typedef unsigned long u64;

extern char __executable_start[];

// The parts of the ELF headers needed to find the end of the mapped image.
struct ehdr {
	unsigned char ident[16];
	unsigned short type, machine;
	unsigned int version;
	u64 entry, phoff, shoff;
	unsigned int flags;
	unsigned short ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};

struct phdr {
	unsigned int type, flags;
	u64 offset, vaddr, paddr, filesz, memsz, align;
};

// image_end: the end of the last PT_LOAD segment, from the headers that the
// first segment maps.
static u64 image_end(u64 start)
{
	struct ehdr *e = (struct ehdr *)start;
	u64 end = 0;

	for (int i = 0; i < e->phnum; i++) {
		struct phdr *p = (struct phdr *)(start + e->phoff + (u64)i * e->phentsize);

		if (p->type == 1 /* PT_LOAD */ && p->vaddr + p->memsz > end)
			end = p->vaddr + p->memsz;
	}
	return end;
}

#if defined(__x86_64__)
#define SYS_write 1
#define SYS_open 2
#define SYS_mmap 9
#define SYS_munmap 11
#define SYS_nanosleep 35
#define SYS_prctl 157
#define SYS_exit_group 231
#elif defined(__aarch64__)
// The generic table: no open, only openat.
#define SYS_openat 56
#define SYS_write 64
#define SYS_exit_group 94
#define SYS_nanosleep 101
#define SYS_prctl 167
#define SYS_munmap 215
#define SYS_mmap 222
#define AT_FDCWD -100
#else
#error "setexe: x86-64 or arm64 only"
#endif
#define PR_SET_MM 35
#define PR_SET_MM_EXE_FILE 13
#define PR_SET_MM_MAP 14
#define O_RDONLY 0
#define O_WRONLY 1
#define O_CREAT 0100

#if defined(__x86_64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}
#else
static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;

	__asm__ volatile("svc #0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	return x0;
}
#endif

static long sys(long n, long a, long b, long c, long d, long e)
{
	return sys6(n, a, b, c, d, e, 0);
}

static long sys_open(const char *path, long flags, long mode)
{
#ifdef SYS_open
	return sys(SYS_open, (long)path, flags, mode, 0, 0);
#else
	return sys(SYS_openat, AT_FDCWD, (long)path, flags, mode, 0);
#endif
}

// sync_code makes the instructions just copied to [p, p+len) visible to
// instruction fetch: x86 keeps its caches coherent, arm64 does not.
static void sync_code(volatile char *p, u64 len)
{
#if defined(__aarch64__)
	u64 ctr, dline, iline, a;

	__asm__ volatile("mrs %0, ctr_el0" : "=r"(ctr));
	dline = 4UL << ((ctr >> 16) & 15);
	iline = 4UL << (ctr & 15);
	for (a = (u64)p & ~(dline - 1); a < (u64)p + len; a += dline)
		__asm__ volatile("dc cvau, %0" ::"r"(a) : "memory");
	__asm__ volatile("dsb ish" ::: "memory");
	for (a = (u64)p & ~(iline - 1); a < (u64)p + len; a += iline)
		__asm__ volatile("ic ivau, %0" ::"r"(a) : "memory");
	__asm__ volatile("dsb ish\nisb" ::: "memory");
#else
	(void)p;
	(void)len;
#endif
}

static char *put(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

static char *num(char *p, long v)
{
	char tmp[24];
	int n = 0;

	if (v < 0) {
		*p++ = '-';
		v = -v;
	}
	do {
		tmp[n++] = '0' + v % 10;
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

// struct prctl_mm_map (linux/prctl.h).
struct mm_map {
	u64 start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
	u64 arg_start, arg_end, env_start, env_end;
	u64 *auxv;
	unsigned int auxv_size, exe_fd;
};

__attribute__((noreturn)) static void stage2(long argc, char **argv, u64 start, u64 len)
{
	long unmapped, fd, set, target, flags, wrote = 0;
	char out[128], *p = out;

	int map = argv[1][0] == '-' && argv[1][1] == 'm';

	if (map) {
		argv++;
		argc--;
	}
	unmapped = sys(SYS_munmap, start, len, 0, 0, 0);
	fd = sys_open(argv[1], O_RDONLY, 0);
	if (map) {
		// Any layout the kernel's checks accept: it only describes the
		// process to /proc; the point is exe_fd.
		struct mm_map m = {
			.start_code = 0x100000, .end_code = 0x200000, .start_data = 0x200000, .end_data = 0x300000,
			.start_brk = 0x300000, .brk = 0x300000, .start_stack = 0x400000,
			.arg_start = 0x400000, .arg_end = 0x400010, .env_start = 0x400010, .env_end = 0x400020,
			.exe_fd = (unsigned int)fd,
		};

		set = sys(SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, (long)&m, sizeof(m), 0);
	} else {
		set = sys(SYS_prctl, PR_SET_MM, PR_SET_MM_EXE_FILE, fd, 0, 0);
	}
	if (argc > 3) {
		long ts[2] = {0, 0};

		for (char *s = argv[3]; *s >= '0' && *s <= '9'; s++)
			ts[0] = ts[0] * 10 + (*s - '0');
		sys(SYS_nanosleep, (long)ts, 0, 0, 0, 0);
	}
	flags = O_WRONLY;
	if (argc > 4 && argv[4][0] == 'c')
		flags |= O_CREAT;
	target = sys_open(argv[2], flags, 0644);
	if (target >= 0)
		wrote = sys(SYS_write, target, (long)"pwned", 5, 0, 0);
	p = num(put(p, "munmap="), unmapped);
	p = num(put(p, " prctl="), set);
	p = num(put(p, " open="), target);
	p = num(put(p, " write="), wrote);
	*p++ = '\n';
	sys(SYS_write, 1, (long)out, p - out, 0, 0);
	sys(SYS_exit_group, 0, 0, 0, 0, 0);
	__builtin_unreachable();
}

__attribute__((used)) static void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	u64 start = (u64)__executable_start & ~4095UL;
	u64 end = (image_end(start) + 4095) & ~4095UL;
	volatile char *copy;
	void (*next)(long, char **, u64, u64);

	if (argc < 3)
		sys(SYS_exit_group, 2, 0, 0, 0, 0);
	copy = (volatile char *)sys6(SYS_mmap, 0, end - start, 7 /* RWX */, 0x22 /* private, anonymous */, -1, 0);
	if ((long)copy < 0)
		sys(SYS_exit_group, 3, 0, 0, 0, 0);
	for (u64 i = 0; i < end - start; i++)
		copy[i] = ((volatile char *)start)[i];
	sync_code(copy, end - start);
	next = (void (*)(long, char **, u64, u64))((u64)copy + ((u64)stage2 - start));
	next(argc, argv, start, end - start);
}

#if defined(__x86_64__)
__attribute__((naked, noreturn)) void _start(void)
{
	__asm__ volatile("mov %rsp, %rdi\n"
			 "and $-16, %rsp\n"
			 "call start_c\n"
			 "hlt\n");
}
#else
__attribute__((naked, noreturn)) void _start(void)
{
	// The stack is 16-byte aligned at entry on arm64.
	__asm__ volatile("mov x0, sp\n"
			 "bl start_c\n"
			 "brk #0\n");
}
#endif
