/* Batch UDP I/O for the RTP engine: one C call per tick for every leg's datagram.
 *
 * Each call leg has its own UDP socket (its own port: symmetric RTP needs the source port
 * to be the leg's), so the kernel offers no cross-socket batch (sendmmsg/recvmmsg batch one
 * socket's datagrams; a leg has one per 20 ms).  What this module removes is the Python work
 * around each syscall: the bound-method call, argument parsing, the address tuple parsed on
 * every send and built (a new str) on every receive.  The syscalls themselves stay.
 *
 *   send_many(fds, datagrams, remotes) -> list of (index, errno)
 *       sendto(fds[i], datagrams[i], remotes[i]) for every i.  remotes[i] is an
 *       ("a.b.c.d", port) tuple; the last parsed tuple per descriptor is remembered, so a
 *       session that keeps its remote tuple costs no parsing.  The result lists the items
 *       not sent: errno 0 = not an IPv4 literal (the caller sends it itself), else the OS
 *       error (full buffer, unreachable peer: the frame is lost, as with socket.sendto).
 *   recv_ready(epfd, maxevents) -> list of (fd, data, addr)
 *       epoll_wait(epfd, timeout 0) once, then one recvfrom (MSG_DONTWAIT) from each ready
 *       descriptor.  addr is the tuple socket.recvfrom would give; for IPv4 the same
 *       tuple object is returned again while a descriptor's peer stays the same.
 *       Empty sockets and errors (ECONNREFUSED from an earlier send, now cleared) are
 *       skipped, as the pure path skips them.
 *
 * Linux only (epoll).  Built by .ci/setup-venv.sh through callcenter/rtpio_build.py; when it
 * cannot be built, callcenter.rtpio says so and the engine uses the pure Python path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define RECV_BYTES 4096
#define MAX_EVENTS 4096

/* Per descriptor: the last remote tuple sent to (strong ref) with its parsed address, and
 * the last source received from with its tuple (strong ref). */
typedef struct {
    PyObject *send_key;
    struct sockaddr_in send_addr;
    PyObject *recv_addr;
    uint32_t recv_ip;
    uint16_t recv_port;
} fd_cache;

static fd_cache *cache = NULL;
static Py_ssize_t cache_len = 0;

static fd_cache *cache_for(int fd)
{
    if (fd < 0)
        return NULL;
    if (fd >= cache_len) {
        Py_ssize_t n = cache_len ? cache_len : 1024;
        while (n <= fd)
            n *= 2;
        fd_cache *grown = PyMem_Realloc(cache, (size_t)n * sizeof(fd_cache));
        if (grown == NULL)
            return NULL;
        memset(grown + cache_len, 0, (size_t)(n - cache_len) * sizeof(fd_cache));
        cache = grown;
        cache_len = n;
    }
    return &cache[fd];
}

/* Parse ("a.b.c.d", port) into sa; 0 on success, -1 if it is not an IPv4 literal tuple. */
static int parse_ipv4(PyObject *remote, struct sockaddr_in *sa)
{
    if (!PyTuple_Check(remote) || PyTuple_GET_SIZE(remote) != 2)
        return -1;
    PyObject *host = PyTuple_GET_ITEM(remote, 0);
    PyObject *port = PyTuple_GET_ITEM(remote, 1);
    if (!PyUnicode_Check(host) || !PyLong_Check(port))
        return -1;
    const char *text = PyUnicode_AsUTF8(host);
    if (text == NULL) {
        PyErr_Clear();
        return -1;
    }
    long p = PyLong_AsLong(port);
    if (p < 0 || p > 65535) {
        PyErr_Clear();
        return -1;
    }
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)p);
    if (inet_pton(AF_INET, text, &sa->sin_addr) != 1)
        return -1;
    return 0;
}

static int append_failure(PyObject *failed, Py_ssize_t index, int err)
{
    PyObject *item = Py_BuildValue("(ni)", index, err);
    if (item == NULL)
        return -1;
    int rc = PyList_Append(failed, item);
    Py_DECREF(item);
    return rc;
}

static PyObject *send_many(PyObject *self, PyObject *args)
{
    PyObject *fds, *datagrams, *remotes;
    if (!PyArg_ParseTuple(args, "O!O!O!:send_many", &PyList_Type, &fds, &PyList_Type, &datagrams,
                          &PyList_Type, &remotes))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(fds);
    if (PyList_GET_SIZE(datagrams) != n || PyList_GET_SIZE(remotes) != n) {
        PyErr_SetString(PyExc_ValueError, "send_many: fds, datagrams and remotes differ in length");
        return NULL;
    }
    PyObject *failed = PyList_New(0);
    if (failed == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        int fd = (int)PyLong_AsLong(PyList_GET_ITEM(fds, i));
        if (fd == -1 && PyErr_Occurred())
            goto error;
        PyObject *datagram = PyList_GET_ITEM(datagrams, i);
        PyObject *remote = PyList_GET_ITEM(remotes, i);
        if (!PyBytes_Check(datagram)) {
            PyErr_SetString(PyExc_TypeError, "send_many: datagrams must be bytes");
            goto error;
        }
        fd_cache *c = cache_for(fd);
        if (c == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        if (c->send_key != remote) {
            struct sockaddr_in sa;
            if (parse_ipv4(remote, &sa) < 0) {
                if (append_failure(failed, i, 0) < 0)
                    goto error;
                continue;
            }
            Py_INCREF(remote);
            Py_XSETREF(c->send_key, remote);
            c->send_addr = sa;
        }
        ssize_t sent = sendto(fd, PyBytes_AS_STRING(datagram), (size_t)PyBytes_GET_SIZE(datagram),
                              MSG_DONTWAIT, (struct sockaddr *)&c->send_addr, sizeof(c->send_addr));
        if (sent < 0 && append_failure(failed, i, errno ? errno : EIO) < 0)
            goto error;
    }
    return failed;
error:
    Py_DECREF(failed);
    return NULL;
}

static PyObject *addr_tuple(fd_cache *c, const struct sockaddr_storage *ss)
{
    char text[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sa = (const struct sockaddr_in *)ss;
        uint32_t ip = sa->sin_addr.s_addr;
        uint16_t port = sa->sin_port;
        if (c != NULL && c->recv_addr != NULL && c->recv_ip == ip && c->recv_port == port) {
            Py_INCREF(c->recv_addr);
            return c->recv_addr;
        }
        if (inet_ntop(AF_INET, &sa->sin_addr, text, sizeof(text)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        PyObject *addr = Py_BuildValue("(si)", text, (int)ntohs(port));
        if (addr != NULL && c != NULL) {
            Py_INCREF(addr);
            Py_XSETREF(c->recv_addr, addr);
            c->recv_ip = ip;
            c->recv_port = port;
        }
        return addr;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)ss;
        if (inet_ntop(AF_INET6, &sa->sin6_addr, text, sizeof(text)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siII)", text, (int)ntohs(sa->sin6_port), (unsigned int)ntohl(sa->sin6_flowinfo),
                             (unsigned int)sa->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

static PyObject *recv_ready(PyObject *self, PyObject *args)
{
    int epfd, maxevents;
    if (!PyArg_ParseTuple(args, "ii:recv_ready", &epfd, &maxevents))
        return NULL;
    if (maxevents < 1 || maxevents > MAX_EVENTS)
        maxevents = MAX_EVENTS;
    struct epoll_event events[MAX_EVENTS];
    int ready = epoll_wait(epfd, events, maxevents, 0);
    if (ready < 0) {
        if (errno == EINTR)
            return PyList_New(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    char buf[RECV_BYTES];
    for (int i = 0; i < ready; i++) {
        int fd = events[i].data.fd;
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof(ss);
        ssize_t got = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&ss, &sslen);
        if (got < 0)
            continue; /* empty, or an error the read cleared (the pure path skips these too) */
        PyObject *addr = addr_tuple(cache_for(fd), &ss);
        if (addr == NULL)
            goto error;
        PyObject *item = Py_BuildValue("(iy#N)", fd, buf, (Py_ssize_t)got, addr);
        if (item == NULL)
            goto error;
        int rc = PyList_Append(out, item);
        Py_DECREF(item);
        if (rc < 0)
            goto error;
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static PyObject *forget(PyObject *self, PyObject *args)
{
    int fd;
    if (!PyArg_ParseTuple(args, "i:forget", &fd))
        return NULL;
    if (fd >= 0 && fd < cache_len) {
        Py_CLEAR(cache[fd].send_key);
        Py_CLEAR(cache[fd].recv_addr);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"send_many", send_many, METH_VARARGS, "sendto for every (fd, datagram, remote); returns the failures"},
    {"recv_ready", recv_ready, METH_VARARGS, "epoll_wait(0) once, one recvfrom per ready fd"},
    {"forget", forget, METH_VARARGS, "drop what is cached for a descriptor (its socket closed)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rtpio", "Batch UDP I/O for the RTP engine (see callcenter/rtpio.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__rtpio(void)
{
    return PyModule_Create(&module);
}
