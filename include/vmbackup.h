/* vmbackup: umbrella header.  Link with -lvmbackup (pkg-config vmbackup). */
#ifndef VMBACKUP_H
#define VMBACKUP_H
#include "vmbackup/common.h"
#include "vmbackup/disk.h"
#include "vmbackup/snapshot_image.h"
#include "vmbackup/target.h"
#include "vmbackup/repo.h"
#include "vmbackup/keys.h"
#include "vmbackup/archive.h"
#include "vmbackup/hv.h"
#include "vmbackup/vmfolder.h"
#include "vmbackup/serve.h"
#include "vmbackup/mount.h"
#include "vmbackup/guestfs.h"
#endif
