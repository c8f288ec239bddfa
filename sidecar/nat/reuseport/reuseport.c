/*
 * reuseport.c: TCP sockets that share the node's listening port (SO_REUSEPORT), for hole punching.
 *
 * Node can listen with `reusePort` but (before net.BoundSocket, v24.19) cannot bind an outgoing
 * socket to a port a listener holds: the bind fails with EADDRINUSE unless SO_REUSEPORT is set on
 * the new socket before bind(2). This addon does exactly that and nothing more:
 *
 *   bind(host, port, ipv6Only) -> fd      socket + SO_REUSEADDR + SO_REUSEPORT + bind, non-blocking
 *   listen(fd, backlog)                   listen(2) on such a socket (the listener never accepts here)
 *   connect(fd, host, port, timeoutMs)    -> Promise<void>: connect(2) + poll(2) in napi async work
 *   shutdown(fd)                          wakes a pending connect (it fails with ECONNRESET)
 *   close(fd)                             closes an fd that was never handed to a net.Socket
 *   address(fd) -> { address, port, family }
 *
 * A connected fd is wrapped in JS with `new net.Socket({ fd })`, which then owns it.
 * Node-API only (version 8), so one build loads in every Node version; Node-API symbols resolve
 * at load time, so this links with `-shared -fPIC` and no libnode.
 */
#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <node_api.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HOST_MAX 64

/* Error codes by name, as Node reports them (err.code), for the ones a dial or bind can meet. */
static const char *errno_name(int e) {
  switch (e) {
  case EADDRINUSE: return "EADDRINUSE";
  case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case EACCES: return "EACCES";
  case EPERM: return "EPERM";
  case EINVAL: return "EINVAL";
  case EBADF: return "EBADF";
  case ENOTSOCK: return "ENOTSOCK";
  case ECONNREFUSED: return "ECONNREFUSED";
  case ECONNRESET: return "ECONNRESET";
  case ECONNABORTED: return "ECONNABORTED";
  case ETIMEDOUT: return "ETIMEDOUT";
  case EHOSTUNREACH: return "EHOSTUNREACH";
  case ENETUNREACH: return "ENETUNREACH";
  case ENETDOWN: return "ENETDOWN";
  case EISCONN: return "EISCONN";
  case EALREADY: return "EALREADY";
  case EMFILE: return "EMFILE";
  case ENFILE: return "ENFILE";
  case ENOBUFS: return "ENOBUFS";
  case ENOMEM: return "ENOMEM";
  case ENOPROTOOPT: return "ENOPROTOOPT";
  default: return "EUNKNOWN";
  }
}

/* An Error shaped like Node's system errors: code, errno (negative, as libuv reports it), syscall. */
static napi_value make_error(napi_env env, int err, const char *syscall) {
  char msg[160];
  napi_value code, message, error, errno_value, syscall_value;
  snprintf(msg, sizeof msg, "%s %s: %s", syscall, errno_name(err), strerror(err));
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, -err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value);
  napi_set_named_property(env, error, "syscall", syscall_value);
  return error;
}

static napi_value throw_errno(napi_env env, int err, const char *syscall) {
  napi_throw(env, make_error(env, err, syscall));
  return NULL;
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

/* Parses a numeric IPv4/IPv6 literal and a port into a sockaddr; no DNS, ever. */
static int to_sockaddr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof *ss);
  if (port < 0 || port > 65535) return -1;
  struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    *len = sizeof *v4;
    return 0;
  }
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    *len = sizeof *v6;
    return 0;
  }
  return -1;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) return -1;
  return 0;
}

static int get_int(napi_env env, napi_value v, int32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return -1;
  return napi_get_value_int32(env, v, out) == napi_ok ? 0 : -1;
}

static int get_host(napi_env env, napi_value v, char *buf) {
  size_t len;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return -1;
  return napi_get_value_string_utf8(env, v, buf, HOST_MAX, &len) == napi_ok && len < HOST_MAX - 1 ? 0 : -1;
}

/* bind(host: string, port: number, ipv6Only: boolean): number */
static napi_value js_bind(napi_env env, napi_callback_info info) {
  napi_value argv[3], result;
  char host[HOST_MAX];
  int32_t port;
  bool v6only = false;
  struct sockaddr_storage ss;
  socklen_t len;
  if (get_args(env, info, 3, argv) != 0 || get_host(env, argv[0], host) != 0 ||
      get_int(env, argv[1], &port) != 0 || napi_get_value_bool(env, argv[2], &v6only) != napi_ok)
    return throw_type(env, "bind(host: string, port: number, ipv6Only: boolean)");
  if (to_sockaddr(host, port, &ss, &len) != 0) return throw_type(env, "host must be a numeric IP, port 0-65535");

  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  int one = 1, v6 = v6only ? 1 : 0;
  /* Both options before bind: the kernel checks them at bind time against the listener's. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
      (ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6) != 0)) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, "setsockopt");
  }
  if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, "bind");
  }
  napi_create_int32(env, fd, &result);
  return result;
}

/* listen(fd: number, backlog: number): void */
static napi_value js_listen(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd, backlog;
  if (get_args(env, info, 2, argv) != 0 || get_int(env, argv[0], &fd) != 0 || get_int(env, argv[1], &backlog) != 0)
    return throw_type(env, "listen(fd: number, backlog: number)");
  if (listen(fd, backlog) != 0) return throw_errno(env, errno, "listen");
  return NULL;
}

/* The connect runs off the JS thread: a blackholed SYN may take the whole timeout. */
typedef struct {
  int fd;
  int timeout_ms;
  struct sockaddr_storage ss;
  socklen_t len;
  int err;
  napi_deferred deferred;
  napi_async_work work;
} connect_job;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void connect_execute(napi_env env, void *data) {
  (void)env;
  connect_job *job = data;
  if (connect(job->fd, (struct sockaddr *)&job->ss, job->len) == 0) {
    job->err = 0;
    return;
  }
  if (errno != EINPROGRESS && errno != EINTR) {
    job->err = errno;
    return;
  }
  int64_t deadline = now_ms() + job->timeout_ms;
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0) {
      job->err = ETIMEDOUT;
      return;
    }
    struct pollfd p = {.fd = job->fd, .events = POLLOUT};
    int n = poll(&p, 1, (int)left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      job->err = errno;
      return;
    }
    if (n == 0) continue; /* re-check the deadline */
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(job->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) soerr = errno;
    job->err = soerr;
    return;
  }
}

static void connect_complete(napi_env env, napi_status status, void *data) {
  connect_job *job = data;
  if (status == napi_cancelled) job->err = ECONNABORTED;
  if (job->err == 0) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, job->deferred, undef);
  } else {
    napi_reject_deferred(env, job->deferred, make_error(env, job->err, "connect"));
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

/* connect(fd: number, host: string, port: number, timeoutMs: number): Promise<void> */
static napi_value js_connect(napi_env env, napi_callback_info info) {
  napi_value argv[4], promise, name;
  char host[HOST_MAX];
  int32_t fd, port, timeout;
  if (get_args(env, info, 4, argv) != 0 || get_int(env, argv[0], &fd) != 0 || get_host(env, argv[1], host) != 0 ||
      get_int(env, argv[2], &port) != 0 || get_int(env, argv[3], &timeout) != 0 || timeout <= 0)
    return throw_type(env, "connect(fd: number, host: string, port: number, timeoutMs: number > 0)");
  connect_job *job = calloc(1, sizeof *job);
  if (job == NULL) return throw_errno(env, ENOMEM, "connect");
  job->fd = fd;
  job->timeout_ms = timeout;
  if (to_sockaddr(host, port, &job->ss, &job->len) != 0) {
    free(job);
    return throw_type(env, "host must be a numeric IP, port 0-65535");
  }
  napi_create_string_utf8(env, "peertunnel:reuseport:connect", NAPI_AUTO_LENGTH, &name);
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_async_work(env, NULL, name, connect_execute, connect_complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    free(job);
    return throw_errno(env, ENOMEM, "connect");
  }
  return promise;
}

static napi_value fd_call(napi_env env, napi_callback_info info, int which) {
  napi_value argv[1];
  int32_t fd;
  if (get_args(env, info, 1, argv) != 0 || get_int(env, argv[0], &fd) != 0) return throw_type(env, "expected an fd");
  if (which == 0) {
    /* On a connecting socket Linux turns shutdown into a disconnect: the pending poll wakes. */
    shutdown(fd, SHUT_RDWR);
  } else if (close(fd) != 0) {
    return throw_errno(env, errno, "close");
  }
  return NULL;
}

static napi_value js_shutdown(napi_env env, napi_callback_info info) { return fd_call(env, info, 0); }
static napi_value js_close(napi_env env, napi_callback_info info) { return fd_call(env, info, 1); }

/* address(fd: number): { address: string, port: number, family: 'IPv4' | 'IPv6' } */
static napi_value js_address(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, v;
  int32_t fd;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char text[INET6_ADDRSTRLEN];
  int port;
  if (get_args(env, info, 1, argv) != 0 || get_int(env, argv[0], &fd) != 0) return throw_type(env, "expected an fd");
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return throw_errno(env, errno, "getsockname");
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
    port = ntohs(a->sin6_port);
  } else {
    return throw_errno(env, EAFNOSUPPORT, "getsockname");
  }
  napi_create_object(env, &out);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, out, "address", v);
  napi_create_int32(env, port, &v);
  napi_set_named_property(env, out, "port", v);
  napi_create_string_utf8(env, ss.ss_family == AF_INET ? "IPv4" : "IPv6", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, out, "family", v);
  return out;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"bind", NULL, js_bind, NULL, NULL, NULL, napi_enumerable, NULL},
      {"listen", NULL, js_listen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"shutdown", NULL, js_shutdown, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"address", NULL, js_address, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
