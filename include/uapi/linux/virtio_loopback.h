/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note */
/*
 * virtio-loopback: virtio devices implemented in user space, used by the
 * same machine's own virtio drivers.
 *
 * User-space API of the transport driver (virtio_loopback.ko). The full
 * reference, with the errors of each call, is docs/uapi.md.
 *
 * Life of a device:
 *
 *   fd = open("/dev/virtio-loopback", O_RDWR);     one file = one device
 *   ioctl(fd, VIRTIO_LOOPBACK_IOC_CREATE, &create); ids, features, queues,
 *                                                   config, DMA window size
 *   ioctl(fd, VIRTIO_LOOPBACK_IOC_SET_QUEUE_FDS, &q)   per queue: kick and
 *                                                   call eventfds
 *   ioctl(fd, VIRTIO_LOOPBACK_IOC_GET_WINDOW, &w);  mmap-only window fd
 *   ioctl(fd, VIRTIO_LOOPBACK_IOC_START);           register with virtio core
 *   loop: read() a struct virtio_loopback_msg, act, write() a
 *         struct virtio_loopback_reply with the same id (poll() for POLLIN);
 *         after a SET_STATUS message with DRIVER_OK, read the rings with
 *         VIRTIO_LOOPBACK_IOC_GET_QUEUE and serve them (kick/call eventfds).
 *   close(fd);                                      device removed; in-flight
 *                                                   requests fail with I/O
 *                                                   errors, window revoked
 *
 * Addresses in the rings (descriptor addresses, ring addresses) are I/O
 * virtual addresses (IOVAs): byte offsets into the device's DMA window.
 * Offset 0 of the window fd maps IOVA 0. The first page is never handed
 * out, so IOVA 0 is never a valid buffer address.
 *
 * All structures have fixed sizes and explicit padding; reserved fields and
 * flags not defined here must be zero (EINVAL otherwise).
 */
#ifndef _UAPI_LINUX_VIRTIO_LOOPBACK_H
#define _UAPI_LINUX_VIRTIO_LOOPBACK_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Bumped on incompatible changes; see VIRTIO_LOOPBACK_IOC_GET_VERSION. */
#define VIRTIO_LOOPBACK_API_VERSION 1

#define VIRTIO_LOOPBACK_DEVICE_NAME "virtio-loopback"

/* Limits of VIRTIO_LOOPBACK_IOC_CREATE. */
#define VIRTIO_LOOPBACK_MAX_QUEUES 64
#define VIRTIO_LOOPBACK_MAX_QUEUE_SIZE 32768
#define VIRTIO_LOOPBACK_CONFIG_MAX 256 /* same as vhost-user GET_CONFIG */
#define VIRTIO_LOOPBACK_MIN_WINDOW (256u << 10)
#define VIRTIO_LOOPBACK_MAX_TIMEOUT_MS 60000

/* Device feature bits in the transport range that may be offered. */
#define VIRTIO_LOOPBACK_TRANSPORT_FEATURES_ALLOWED                            \
	((1ULL << 28) /* VIRTIO_RING_F_INDIRECT_DESC */ |                     \
	 (1ULL << 29) /* VIRTIO_RING_F_EVENT_IDX */ |                         \
	 (1ULL << 32) /* VIRTIO_F_VERSION_1 (always offered) */ |             \
	 (1ULL << 33) /* VIRTIO_F_ACCESS_PLATFORM (always offered) */)

/**
 * struct virtio_loopback_create - VIRTIO_LOOPBACK_IOC_CREATE argument
 * @device_id:      virtio device id (VIRTIO_ID_BLOCK, VIRTIO_ID_RNG, ...),
 *                  any non-zero value below 0x10000
 * @vendor_id:      virtio vendor id reported to drivers
 * @features:       device feature bits. Bits 24..49 are the transport's: of
 *                  those only VIRTIO_LOOPBACK_TRANSPORT_FEATURES_ALLOWED may
 *                  be set. VERSION_1 and ACCESS_PLATFORM are always offered.
 * @num_queues:     number of virtqueues, 1..VIRTIO_LOOPBACK_MAX_QUEUES
 * @max_queue_size: largest ring size a queue may have, a power of two
 *                  from 2 to VIRTIO_LOOPBACK_MAX_QUEUE_SIZE
 * @config_size:    bytes of device config space in @config, 0..256
 * @window_size:    bytes of DMA window (rings and bounce buffers); rounded
 *                  up to pages; 0 picks a default fitted to the queues.
 *                  Bounded below by VIRTIO_LOOPBACK_MIN_WINDOW and above by
 *                  the module parameter max_window_mb.
 * @timeout_ms:     how long the kernel waits for a reply to a message before
 *                  it gives up on the device (0: module default, 5000)
 * @flags:          VIRTIO_LOOPBACK_CREATE_* bits
 * @reserved:       must be 0
 * @config:         initial device config space
 */
struct virtio_loopback_create {
	__u32 device_id;
	__u32 vendor_id;
	__u64 features;
	__u32 num_queues;
	__u32 max_queue_size;
	__u32 config_size;
	__u32 timeout_ms;
	__u64 window_size;
	__u32 flags;
	__u32 reserved[7];
	__u8 config[VIRTIO_LOOPBACK_CONFIG_MAX];
};

/*
 * Zero-copy: a buffer segment that covers whole pages is not bounced; the
 * driver's own pages appear in the window at the segment's IOVA while the
 * device owns the request (from the notify that makes it available until
 * the kernel publishes its completion), read-only if the device only reads
 * them. They are mapped so that nothing can pin them (get_user_pages fails:
 * O_DIRECT I/O, io_uring buffer registration, vmsplice and
 * process_vm_readv on them get EFAULT or EEXIST), and are unmapped before the driver
 * sees the completion; a later touch gets SIGBUS. docs/uapi.md, "Zero-copy",
 * gives the rules. The window then has a zero-copy zone of IOVA space after
 * the bounce zone (GET_INFO's window_size counts it).
 */
#define VIRTIO_LOOPBACK_CREATE_ZERO_COPY (1u << 0)
#define VIRTIO_LOOPBACK_CREATE_FLAGS (VIRTIO_LOOPBACK_CREATE_ZERO_COPY)

/**
 * struct virtio_loopback_info - VIRTIO_LOOPBACK_IOC_GET_INFO result
 * @api_version:   VIRTIO_LOOPBACK_API_VERSION of the running module
 * @state:         VIRTIO_LOOPBACK_STATE_*
 * @index:         device index: the parent device is virtio-loopback.<index>
 *                 in sysfs (/sys/devices/virtual/misc/virtio-loopback/)
 * @virtio_index:  index of the virtio device (virtio<N>), -1 until started
 * @window_size:   bytes in the DMA window
 * @driver_features: features the driver accepted (valid after FEATURES_OK)
 * @status:        current virtio device status byte
 * @reserved:      0
 */
struct virtio_loopback_info {
	__u32 api_version;
	__u32 state;
	__u32 index;
	__s32 virtio_index;
	__u64 window_size;
	__u64 driver_features;
	__u32 status;
	__u32 reserved[7];
};

/*
 * Device states. BROKEN: the kernel gave up on user space (a reply timed
 * out, or DRIVER_OK was refused); requests fail, only close() is useful.
 */
#define VIRTIO_LOOPBACK_STATE_NONE 0    /* file open, no device yet */
#define VIRTIO_LOOPBACK_STATE_CREATED 1 /* created, not started */
#define VIRTIO_LOOPBACK_STATE_STARTED 2 /* registered with the virtio core */
#define VIRTIO_LOOPBACK_STATE_BROKEN 3  /* see above */

/**
 * struct virtio_loopback_window - VIRTIO_LOOPBACK_IOC_GET_WINDOW result
 * @fd:    a new file descriptor (O_CLOEXEC) of the DMA window. It supports
 *         only mmap(MAP_SHARED) within [0, @size) and close(); it gives
 *         access to this device's window and nothing else. After the device
 *         is removed its mappings are revoked: pages read as zero and writes
 *         are discarded.
 * @flags: 0
 * @size:  bytes in the window (IOVA range [0, @size))
 * @reserved: 0
 */
struct virtio_loopback_window {
	__s32 fd;
	__u32 flags;
	__u64 size;
	__u64 reserved[2];
};

/**
 * struct virtio_loopback_queue_fds - VIRTIO_LOOPBACK_IOC_SET_QUEUE_FDS
 * @index:   queue index, below num_queues
 * @flags:   0
 * @kick_fd: eventfd the kernel signals when the driver notifies the queue
 *           (the back-end waits on it), or -1 to detach. A notification
 *           that finds no kick eventfd is remembered and delivered when one
 *           is attached.
 * @call_fd: eventfd the back-end signals after it adds used buffers; the
 *           kernel waits on it and runs the queue's interrupt; or -1.
 *           Signals pending when attached are delivered at once.
 * @reserved: 0
 *
 * May be called in any state before the device is broken, any number of
 * times; the old eventfds are released.
 */
struct virtio_loopback_queue_fds {
	__u32 index;
	__u32 flags;
	__s32 kick_fd;
	__s32 call_fd;
	__u64 reserved[2];
};

/**
 * struct virtio_loopback_queue_info - VIRTIO_LOOPBACK_IOC_GET_QUEUE
 * @index:  (in) queue index, below num_queues
 * @flags:  (out) VIRTIO_LOOPBACK_QUEUE_READY if the driver set the queue up
 * @size:   (out) ring size (number of descriptors), 0 if not ready
 * @reserved0: 0
 * @desc:   (out) IOVA of the descriptor table
 * @avail:  (out) IOVA of the device's available ring: a copy the kernel
 *          fills from the driver's at each notify (read-only)
 * @used:   (out) IOVA of the device's used ring, which the kernel checks
 *          and copies into the driver's at each call
 * @outstanding: (out) buffers the driver made available that the device
 *          has not used yet, as the kernel last saw them
 * @avail_idx: (out) the driver's available index the kernel last saw
 * @used_idx: (out) the device's used index the kernel last checked
 * @reserved: 0
 *
 * A device with @outstanding > 0 whose @used_idx does not move is not
 * making progress: the adapter uses this to notice a stopped back-end.
 */
struct virtio_loopback_queue_info {
	__u32 index;
	__u32 flags;
	__u32 size;
	__u32 reserved0;
	__u64 desc;
	__u64 avail;
	__u64 used;
	__u32 outstanding;
	__u16 avail_idx;
	__u16 used_idx;
	__u64 reserved;
};

#define VIRTIO_LOOPBACK_QUEUE_READY (1u << 0)

/**
 * struct virtio_loopback_interrupt - VIRTIO_LOOPBACK_IOC_INTERRUPT
 * @index: queue index whose interrupt to run, or
 *         VIRTIO_LOOPBACK_CONFIG_INTERRUPT for a config-changed interrupt
 * @flags: 0
 *
 * The fallback to signalling the queue's call eventfd (and what tests use).
 */
struct virtio_loopback_interrupt {
	__u32 index;
	__u32 flags;
};

#define VIRTIO_LOOPBACK_CONFIG_INTERRUPT 0xffffffffu

/**
 * struct virtio_loopback_config - VIRTIO_LOOPBACK_IOC_SET_CONFIG
 * @offset: first byte of config space to replace
 * @len:    number of bytes; @offset + @len <= config_size given at create
 * @flags:  VIRTIO_LOOPBACK_CONFIG_NOTIFY raises the driver's config-changed
 *          callback (a device-side change such as a resized disk); without
 *          it the cache is updated silently (a reply to a config write)
 * @reserved: 0
 * @data:   the new bytes
 */
struct virtio_loopback_config {
	__u32 offset;
	__u32 len;
	__u32 flags;
	__u32 reserved;
	__u8 data[VIRTIO_LOOPBACK_CONFIG_MAX];
};

#define VIRTIO_LOOPBACK_CONFIG_NOTIFY (1u << 0)

/**
 * struct virtio_loopback_requeue - VIRTIO_LOOPBACK_IOC_REQUEUE
 * @index: (in) queue index, below num_queues
 * @flags: (in) 0
 * @base:  (out) the used index: the vring base to give the next back-end
 * @count: (out) how many requests were put back
 *
 * Hands a queue to a new back-end after the previous one was lost without
 * stopping the ring (it crashed): the available ring is rewritten so that
 * every buffer the driver made available and no back-end has used follows
 * the used index, whether or not the lost back-end had taken it. A new
 * back-end that starts at @base then serves each of them exactly once.
 * Only while no back-end serves the queue.
 */
struct virtio_loopback_requeue {
	__u32 index;
	__u32 flags;
	__u32 base;
	__u32 count;
};

/*
 * Messages: the kernel asks, user space answers.
 *
 * read() on the device file returns exactly one struct virtio_loopback_msg
 * (the buffer must be at least that large; EINVAL otherwise), blocking
 * unless O_NONBLOCK (EAGAIN). poll() reports POLLIN when one is waiting.
 * At most one message is outstanding per device. Answer it by write()ing
 * exactly one struct virtio_loopback_reply with the message's id. A reply
 * that does not come within timeout_ms breaks the device.
 */
/*
 * Message types. On RESET, stop using the rings before replying: they are
 * freed right after the reply.
 */
#define VIRTIO_LOOPBACK_MSG_SET_STATUS 1 /* the driver wrote the status */
#define VIRTIO_LOOPBACK_MSG_RESET 2      /* the driver reset the device */
#define VIRTIO_LOOPBACK_MSG_SET_CONFIG 3 /* the driver wrote config bytes */

/**
 * struct virtio_loopback_msg - a request from the kernel
 * @id:       request id, echo it in the reply
 * @type:     VIRTIO_LOOPBACK_MSG_*
 * @reserved0: 0
 * @status:   SET_STATUS: the new status byte and, once FEATURES_OK is set,
 *            the negotiated (driver) features. A negative reply to a
 *            status with FEATURES_OK rejects the features; to DRIVER_OK
 *            it fails the device (the driver sees NEEDS_RESET).
 * @config:   SET_CONFIG: bytes [offset, offset + len) of config space were
 *            written with data (already in the kernel's cache). Reply
 *            after updating the cache (VIRTIO_LOOPBACK_IOC_SET_CONFIG
 *            without NOTIFY) if the write changes what the driver reads.
 */
struct virtio_loopback_msg {
	__u32 id;
	__u16 type;
	__u16 reserved0;
	union {
		struct {
			__u64 driver_features;
			__u32 status;
			__u32 reserved;
		} status;
		struct {
			__u32 offset;
			__u32 len;
			__u8 data[VIRTIO_LOOPBACK_CONFIG_MAX];
		} config;
		__u8 raw[264];
	};
};

/**
 * struct virtio_loopback_reply - the answer to one message
 * @id:     id of the message answered
 * @result: 0 for success or a negative errno
 * @reserved: 0
 */
struct virtio_loopback_reply {
	__u32 id;
	__s32 result;
	__u64 reserved;
};

#define VIRTIO_LOOPBACK_IOC_MAGIC 0xBD

/* Returns VIRTIO_LOOPBACK_API_VERSION (ioctl return value). Any state. */
#define VIRTIO_LOOPBACK_IOC_GET_VERSION _IO(VIRTIO_LOOPBACK_IOC_MAGIC, 0x00)
/* Creates this file's device. EEXIST if it already has one. */
#define VIRTIO_LOOPBACK_IOC_CREATE \
	_IOW(VIRTIO_LOOPBACK_IOC_MAGIC, 0x01, struct virtio_loopback_create)
/* State, indexes and negotiated features of this file's device. */
#define VIRTIO_LOOPBACK_IOC_GET_INFO \
	_IOR(VIRTIO_LOOPBACK_IOC_MAGIC, 0x02, struct virtio_loopback_info)
/* A new mmap-only file descriptor of the device's DMA window. */
#define VIRTIO_LOOPBACK_IOC_GET_WINDOW \
	_IOR(VIRTIO_LOOPBACK_IOC_MAGIC, 0x03, struct virtio_loopback_window)
/* Attaches (or detaches, -1) a queue's kick and call eventfds. */
#define VIRTIO_LOOPBACK_IOC_SET_QUEUE_FDS \
	_IOW(VIRTIO_LOOPBACK_IOC_MAGIC, 0x04, struct virtio_loopback_queue_fds)
/*
 * Registers the device with the virtio core; drivers may probe it at once
 * (their messages arrive on the file), so call it from the loop that
 * answers messages or just before entering it.
 */
#define VIRTIO_LOOPBACK_IOC_START _IO(VIRTIO_LOOPBACK_IOC_MAGIC, 0x05)
/* Size and ring addresses of one queue. */
#define VIRTIO_LOOPBACK_IOC_GET_QUEUE \
	_IOWR(VIRTIO_LOOPBACK_IOC_MAGIC, 0x06, struct virtio_loopback_queue_info)
/* Runs a queue's interrupt or the config-changed interrupt. */
#define VIRTIO_LOOPBACK_IOC_INTERRUPT \
	_IOW(VIRTIO_LOOPBACK_IOC_MAGIC, 0x07, struct virtio_loopback_interrupt)
/* Replaces config bytes in the kernel's cache. */
#define VIRTIO_LOOPBACK_IOC_SET_CONFIG \
	_IOW(VIRTIO_LOOPBACK_IOC_MAGIC, 0x08, struct virtio_loopback_config)
/* Puts a lost back-end's unfinished requests back in the available ring. */
#define VIRTIO_LOOPBACK_IOC_REQUEUE \
	_IOWR(VIRTIO_LOOPBACK_IOC_MAGIC, 0x09, struct virtio_loopback_requeue)

#endif /* _UAPI_LINUX_VIRTIO_LOOPBACK_H */
