/* Running VBoxManage (vboxmanage.c). */
#ifndef VMB_PLUGIN_VBOXMANAGE_H
#define VMB_PLUGIN_VBOXMANAGE_H
#include <stddef.h>

/* 1 and its path in @out when VBoxManage is on PATH, else 0. */
int vbox_manage_find(char *out, size_t len);
/* Run it with @args (NULL-terminated, without argv[0]); @out: stdout
 * (free()), @status its exit code. */
int vbox_manage_run(const char *prog, const char *const *args, char **out,
		    int *status);
/* The VM's state (a vmb_hv_vm_state) and a note; 1 when VBoxManage does
 * not know the VM (state unknown), 0 when it answered. */
int vbox_manage_state(const char *prog, const char *uuid, int *state,
		      char *why, size_t len);
/* Take a live snapshot @name; its uuid in @uuid_out ("" if not said). */
int vbox_manage_snapshot_take(const char *prog, const char *uuid,
			      const char *name, char uuid_out[37]);
int vbox_manage_snapshot_delete(const char *prog, const char *uuid,
				const char *snap);
#endif
