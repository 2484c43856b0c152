/*
 * Example: back up one disk image file with libvmbackup.
 *
 *   cc backup_file.c $(pkg-config --cflags --libs vmbackup) -o backup_file
 *   VMB_PASSPHRASE=secret ./backup_file /srv/backups/repo disk.qcow2
 *
 * The repository must exist (vmb init, or vmb_repo_init()).
 */
#include <stdio.h>
#include <stdlib.h>
#include <vmbackup.h>

int main(int argc, char **argv)
{
	vmb_backup_options opts = VMB_BACKUP_OPTIONS_INIT;
	vmb_backup_source src = { NULL, NULL, NULL };
	vmb_backup_result res;
	vmb_repo *repo;
	int rc;

	if (argc != 3) {
		fprintf(stderr, "usage: %s REPO IMAGE\n", argv[0]);
		return 2;
	}
	rc = vmb_repo_open(argv[1], getenv("VMB_PASSPHRASE"), &repo);
	if (rc) {
		fprintf(stderr, "cannot open %s: %s\n", argv[1],
			vmb_error_message());
		return 1;
	}
	src.path = argv[2];
	rc = vmb_repo_backup(repo, &src, 1, &opts, &res);
	if (rc) {
		fprintf(stderr, "backup failed: %s\n", vmb_error_message());
		vmb_repo_close(repo);
		return 1;
	}
	printf("snapshot %s: %llu bytes read, %llu new\n", res.snapshot,
	       (unsigned long long)res.bytes_read,
	       (unsigned long long)res.bytes_new);
	vmb_repo_close(repo);
	return 0;
}
