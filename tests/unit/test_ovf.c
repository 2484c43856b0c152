/*
 * The OVF side of `vmb export --ova` and `vmb import` (lib/archive/ovf.c):
 * a libvirt domain's CPUs, memory, firmware, NICs and disk buses become
 * the descriptor's hardware; an imported OVF's CPUs and memory carry over;
 * what is built parses back with our reader (which uses libxml2) with the
 * right files, sizes and capacities; names that need escaping survive.
 */
#include <stdlib.h>
#include <string.h>
#include "vmbackup.h"
#include "archive/archive_internal.h"
#include "testutil.h"

static const char domain[] =
	"<domain type='kvm'><name>web1</name>"
	"<memory unit='MiB'>2048</memory><vcpu placement='static'>4</vcpu>"
	"<os firmware='efi'><type arch='x86_64'>hvm</type></os>"
	"<devices>"
	"<disk type='file' device='disk'><source file='/v/a.qcow2'/>"
	"<target dev='vda' bus='virtio'/></disk>"
	"<disk type='file' device='disk'><source file='/v/b.qcow2'/>"
	"<target dev='sda' bus='sata'/></disk>"
	"<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>"
	"<interface type='network'><mac address='52:54:00:12:34:56'/>"
	"<model type='virtio'/></interface>"
	"<interface type='bridge'><mac address='52:54:00:ab:cd:ef'/>"
	"<model type='e1000'/></interface>"
	"</devices></domain>";

static void test_from_libvirt_and_back(void)
{
	struct ovf_vm vm;
	struct ovf_vm_disk d[2];
	struct ovf o;
	char *x;
	memset(&vm, 0, sizeof vm);
	memset(d, 0, sizeof d);
	strcpy(d[0].name, "vda");
	strcpy(d[1].name, "sda");
	d[0].file = "web<1>-disk1.vmdk"; /* escaping on the way out */
	d[0].file_size = 123456;
	d[0].capacity = 10737418240ull;
	d[1].file = "web1-disk2.vmdk";
	d[1].file_size = 999;
	d[1].capacity = 1048576;
	vm.name = "web & \"one\"";
	vm.disks = d;
	vm.ndisks = 2;
	CHECK_OK(vmb_archive__ovf_vm_from_config("libvirt-xml", domain, &vm));
	CHECK(vm.cpus == 4);
	CHECK(vm.memory_mb == 2048);
	CHECK(vm.efi == 1);
	CHECK(vm.nnics == 2);
	CHECK(!strcmp(vm.nics[0].mac, "52:54:00:12:34:56"));
	CHECK(!strcmp(vm.nics[1].model, "E1000"));
	CHECK(!strcmp(d[0].bus, "scsi"));
	CHECK(!strcmp(d[1].bus, "sata"));
	x = vmb_archive__ovf_build(&vm);
	CHECK(x != NULL);
	if (!x)
		return;
	CHECK(strstr(x, "<rasd:VirtualQuantity>4</rasd:VirtualQuantity>"));
	CHECK(strstr(x, "<rasd:VirtualQuantity>2048</rasd:VirtualQuantity>"));
	CHECK(strstr(x, "vmw:value=\"efi\""));
	CHECK(strstr(x, "<rasd:ResourceType>20</rasd:ResourceType>"));
	CHECK(strstr(x, "<rasd:Address>52:54:00:ab:cd:ef</rasd:Address>"));
	CHECK_OK(vmb_archive__ovf_parse(x, strlen(x), &o));
	CHECK(o.vm && !strcmp(o.vm, "web & \"one\""));
	CHECK(o.nfiles == 2 && o.ndisks == 2);
	if (o.nfiles == 2 && o.ndisks == 2) {
		CHECK(!strcmp(o.files[0].href, "web<1>-disk1.vmdk"));
		CHECK(o.files[0].has_size && o.files[0].size == 123456);
		CHECK(o.disks[0].has_capacity &&
		      o.disks[0].capacity == 10737418240ull);
		CHECK(!strcmp(o.disks[1].file_ref, o.files[1].id));
		CHECK(o.disks[1].capacity == 1048576);
	}
	vmb_archive__ovf_free(&o);
	/* an imported OVF's hardware carries over */
	memset(&vm, 0, sizeof vm);
	vm.name = "again";
	vm.disks = d;
	vm.ndisks = 2;
	CHECK_OK(vmb_archive__ovf_vm_from_config("ovf-xml", x, &vm));
	CHECK(vm.cpus == 4 && vm.memory_mb == 2048);
	free(x);
	/* unknown or broken configurations give the minimal descriptor */
	memset(&vm, 0, sizeof vm);
	vm.name = "plain";
	vm.disks = d;
	vm.ndisks = 1;
	CHECK_OK(vmb_archive__ovf_vm_from_config("libvirt-xml", "<domain", &vm));
	CHECK_OK(vmb_archive__ovf_vm_from_config("vmx", "x = 1", &vm));
	CHECK(vm.cpus == 0 && vm.memory_mb == 0 && vm.nnics == 0);
	x = vmb_archive__ovf_build(&vm);
	CHECK(x && strstr(x, "<rasd:VirtualQuantity>1</rasd:VirtualQuantity>"));
	CHECK(x && strstr(x, "<rasd:VirtualQuantity>512</rasd:VirtualQuantity>"));
	CHECK(x && !strstr(x, "NetworkSection"));
	free(x);
}

int main(void)
{
	test_from_libvirt_and_back();
	return test_done();
}
