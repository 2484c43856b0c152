/*
 * libarchive, loaded at run time on first use (docs/archives.md).
 *
 * Only `vmb export` and `vmb import` need libarchive, and it pulls in a
 * dozen more shared libraries (libxml2, ICU, nettle, lzma, ...), which
 * cost every other command tens of milliseconds with a cold page cache.
 * So libvmbackup does not link it: vmb_archive_load() dlopen()s
 * VMB_ARCHIVE_SONAME once per process and resolves every function
 * lib/archive/ uses into vmb_archive_fn.
 *
 * Types and constants still come from <archive.h> at compile time.  A
 * file that includes this header after <archive.h> calls libarchive as
 * usual: each archive_* name below is a macro for the matching table
 * entry, with the exact prototype from <archive.h> (__typeof__).  It must
 * call vmb_archive_load() (and stop on failure) before the first of them.
 * A libarchive function used without an entry here is an undefined
 * symbol when vmb links, as libarchive is not linked any more: add it to
 * VMB_ARCHIVE_FUNCS and to the macros below.
 */
#ifndef VMB_ARCHIVE_DL_H
#define VMB_ARCHIVE_DL_H

#include <archive.h>
#include <archive_entry.h>

#if ARCHIVE_VERSION_NUMBER < 3000000
#error "libarchive 3 (soname libarchive.so.13) is needed"
#endif

/* the ABI the 3.x headers describe (Debian: package libarchive13) */
#define VMB_ARCHIVE_SONAME "libarchive.so.13"
#define VMB_ARCHIVE_PACKAGE "libarchive13"

#define VMB_ARCHIVE_FUNCS(X)                  \
	X(archive_entry_filetype)             \
	X(archive_entry_free)                 \
	X(archive_entry_hardlink)             \
	X(archive_entry_new)                  \
	X(archive_entry_pathname)             \
	X(archive_entry_set_filetype)         \
	X(archive_entry_set_mtime)            \
	X(archive_entry_set_pathname)         \
	X(archive_entry_set_perm)             \
	X(archive_entry_set_size)             \
	X(archive_entry_size)                 \
	X(archive_entry_size_is_set)          \
	X(archive_entry_sparse_add_entry)     \
	X(archive_entry_symlink)              \
	X(archive_error_string)               \
	X(archive_read_data_block)            \
	X(archive_read_free)                  \
	X(archive_read_new)                   \
	X(archive_read_next_header)           \
	X(archive_read_open)                  \
	X(archive_read_support_format_tar)    \
	X(archive_set_error)                  \
	X(archive_write_close)                \
	X(archive_write_data)                 \
	X(archive_write_finish_entry)         \
	X(archive_write_free)                 \
	X(archive_write_header)               \
	X(archive_write_new)                  \
	X(archive_write_open)                 \
	X(archive_write_set_format_pax)       \
	X(archive_write_set_format_ustar)

struct vmb_archive_fn {
#define VMB_ARCHIVE_FN_MEMBER(f) __typeof__(f) *p_##f;
	VMB_ARCHIVE_FUNCS(VMB_ARCHIVE_FN_MEMBER)
#undef VMB_ARCHIVE_FN_MEMBER
};

/* Filled by the first successful vmb_archive_load(); read-only after. */
extern struct vmb_archive_fn vmb_archive_fn;

/*
 * Loads libarchive once per process (thread safe; later calls only return
 * the first outcome).  0, or VMB_ENOTSUP with the error message "<what>
 * needs libarchive (libarchive.so.13): <why>; install the libarchive13
 * package" when the library or one of its functions cannot be loaded.
 * @what names the operation, e.g. "export".
 */
int vmb_archive_load(const char *what);

/*
 * Tests only: open @path instead of VMB_ARCHIVE_SONAME.  Must be called
 * before the first vmb_archive_load() of the process, by one thread;
 * later calls have no effect.  Deliberately not an environment variable:
 * nothing outside the process can make libvmbackup load other code
 * (LD_LIBRARY_PATH, which ld.so ignores for set-uid programs, remains the
 * only way to pick another libarchive.so.13).  Not exported from the
 * shared library.
 */
void vmb_archive_set_path_for_tests(const char *path);

#ifndef VMB_ARCHIVE_DL_NO_MACROS
#define archive_entry_filetype (vmb_archive_fn.p_archive_entry_filetype)
#define archive_entry_free (vmb_archive_fn.p_archive_entry_free)
#define archive_entry_hardlink (vmb_archive_fn.p_archive_entry_hardlink)
#define archive_entry_new (vmb_archive_fn.p_archive_entry_new)
#define archive_entry_pathname (vmb_archive_fn.p_archive_entry_pathname)
#define archive_entry_set_filetype (vmb_archive_fn.p_archive_entry_set_filetype)
#define archive_entry_set_mtime (vmb_archive_fn.p_archive_entry_set_mtime)
#define archive_entry_set_pathname (vmb_archive_fn.p_archive_entry_set_pathname)
#define archive_entry_set_perm (vmb_archive_fn.p_archive_entry_set_perm)
#define archive_entry_set_size (vmb_archive_fn.p_archive_entry_set_size)
#define archive_entry_size (vmb_archive_fn.p_archive_entry_size)
#define archive_entry_size_is_set (vmb_archive_fn.p_archive_entry_size_is_set)
#define archive_entry_sparse_add_entry \
	(vmb_archive_fn.p_archive_entry_sparse_add_entry)
#define archive_entry_symlink (vmb_archive_fn.p_archive_entry_symlink)
#define archive_error_string (vmb_archive_fn.p_archive_error_string)
#define archive_read_data_block (vmb_archive_fn.p_archive_read_data_block)
#define archive_read_free (vmb_archive_fn.p_archive_read_free)
#define archive_read_new (vmb_archive_fn.p_archive_read_new)
#define archive_read_next_header (vmb_archive_fn.p_archive_read_next_header)
#define archive_read_open (vmb_archive_fn.p_archive_read_open)
#define archive_read_support_format_tar \
	(vmb_archive_fn.p_archive_read_support_format_tar)
#define archive_set_error (vmb_archive_fn.p_archive_set_error)
#define archive_write_close (vmb_archive_fn.p_archive_write_close)
#define archive_write_data (vmb_archive_fn.p_archive_write_data)
#define archive_write_finish_entry (vmb_archive_fn.p_archive_write_finish_entry)
#define archive_write_free (vmb_archive_fn.p_archive_write_free)
#define archive_write_header (vmb_archive_fn.p_archive_write_header)
#define archive_write_new (vmb_archive_fn.p_archive_write_new)
#define archive_write_open (vmb_archive_fn.p_archive_write_open)
#define archive_write_set_format_pax \
	(vmb_archive_fn.p_archive_write_set_format_pax)
#define archive_write_set_format_ustar \
	(vmb_archive_fn.p_archive_write_set_format_ustar)
#endif

#endif
