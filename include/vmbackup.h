/* vmbackup: umbrella header.  Link with -lvmbackup (pkg-config vmbackup). */
#ifndef VMBACKUP_H
#define VMBACKUP_H
#include "vmbackup/common.h"
#include "vmbackup/disk.h"
#include "vmbackup/target.h"
#include "vmbackup/repo.h"
#endif
