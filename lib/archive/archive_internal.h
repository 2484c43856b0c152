/*
 * Internals of the archive module (lib/archive/): constants of the
 * encrypted archive format and helpers shared by export.c, import.c and
 * ovf.c.  Layout and rules: docs/archives.md.
 */
#ifndef VMB_ARCHIVE_INTERNAL_H
#define VMB_ARCHIVE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sodium.h>
#include "vmbackup/repo.h"

#define X_MAGIC "VMBX"
#define X_VERSION 1    /* sealed under a key derived from the repository's */
#define X_VERSION_PW 2 /* self-contained: its own key, wrapped (Argon2id) */
#define X_KEYBLOCK_MAX 4096 /* the wrapped key's JSON, format 2 */
#define X_SEG (64u << 10)
#define X_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define X_FIXED 28 /* magic .. repository id: AD of every segment */
#define X_HDR (X_FIXED + crypto_secretstream_xchacha20poly1305_HEADERBYTES)
#define X_SUBKEY 16
#define X_CONTEXT "vmbexpt1"

#define MAX_ENTRIES 1000
#define MAX_ENTRY_SIZE (16ULL << 40)  /* 16 TiB */
#define MAX_META (4u << 20)           /* manifest, OVF, .mf, config */
#define SPACE_RESERVE (64ULL << 20)   /* leave this much free in TMPDIR */
#define SPACE_CHECK_EVERY (64ULL << 20)
#define IO_BUF (1u << 20)

/* 1 MiB of zeros, for holes */
extern const uint8_t vmb_archive__zeros[1 << 20];

/* Feed @n zero bytes to a SHA-256 state. */
void vmb_archive__hash_zeros(crypto_hash_sha256_state *h, uint64_t n);
/* Finish a SHA-256 state into lowercase hex. */
void vmb_archive__hash_hex(crypto_hash_sha256_state *h, char hex[65]);
/* The key of archives exported from repository @r (encrypted ones). */
void vmb_archive__export_key(const vmb_repo *r, uint8_t key[32]);

/* An encrypted archive stream's secrets: its key while the stream starts,
 * and the secretstream state (which holds a key) for the whole stream.
 * In libsodium's guarded heap like the repository keys: mlock()ed,
 * MADV_DONTDUMP, wiped by vmb_archive__secret_free(). */
struct vmb_archive_secret {
	uint8_t key[32];
	crypto_secretstream_xchacha20poly1305_state st;
};
/* Zeroed, or NULL (error set). */
struct vmb_archive_secret *vmb_archive__secret_new(void);
/* Wipe and free; accepts NULL. */
void vmb_archive__secret_free(struct vmb_archive_secret *s);
/* A file name safe in any archive and any file system; free(). */
char *vmb_archive__safe_name(const char *s, const char *fallback);
/* Printable copy of an untrusted name for a one-line message. */
void vmb_archive__shown_name(const char *s, char out[120]);
/* Remove a folder that holds files only. */
void vmb_archive__remove_tree(const char *dir);

/* What import needs of an OVF descriptor (lib/archive/ovf.c). */
struct ovf_file {
	char *id, *href;  /* ovf:id, ovf:href */
	uint64_t size;    /* ovf:size, if has_size */
	int has_size;
};
struct ovf_disk {
	char *id, *file_ref; /* ovf:diskId, ovf:fileRef (a File's id) */
	uint64_t capacity;   /* bytes (capacity x units), if has_capacity */
	int has_capacity;
};
struct ovf {
	char *vm;              /* VirtualSystem ovf:id, else its Name */
	struct ovf_file *files;
	size_t nfiles;
	struct ovf_disk *disks;
	size_t ndisks;
};

/* Parse @p len bytes of descriptor text; on failure the error message
 * says what is wrong (without the archive's name) and *o is empty. */
int vmb_archive__ovf_parse(const char *text, size_t len, struct ovf *o);

/* What `vmb export --ova` describes in its OVF descriptor. */
#define OVF_MAX_NICS 16
struct ovf_vm {
	const char *name;
	unsigned cpus;      /* 0: 1 */
	uint64_t memory_mb; /* 0: 512 */
	int efi;
	struct ovf_vm_disk {
		char name[64];  /* the disk's name in the snapshot ("vda") */
		const char *file;
		uint64_t file_size, capacity;
		char bus[8];    /* "scsi" (default), "sata", "ide" */
	} *disks;
	size_t ndisks;
	struct { char mac[32], model[16]; } nics[OVF_MAX_NICS];
	size_t nnics;
};
/* Fill CPUs, memory, firmware, NICs and disk buses from a stored
 * configuration ("libvirt-xml", "ovf-xml"); others leave the defaults. */
int vmb_archive__ovf_vm_from_config(const char *format, const char *config,
				    struct ovf_vm *vm);
/* The OVF 1.0 descriptor text, or NULL (out of memory). */
char *vmb_archive__ovf_build(const struct ovf_vm *vm);
void vmb_archive__ovf_free(struct ovf *o);

#endif
