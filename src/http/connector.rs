//! http/connector.rs opens the connections of the REST and token calls (ureq's TCP and CONNECT-proxy
//! steps, then TLS with the client's own rustls configuration) and keeps the registry of the
//! sockets they hold open, so that a shutdown can cut a call hanging on a silent server; it never
//! sends a request itself and never turns certificate verification off.

use std::io::{Read, Write};
use std::sync::{Arc, Weak};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use ureq::unversioned::transport::time::{Duration as UreqDuration, Instant as UreqInstant};
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    ShutdownHandle, TcpConnector, Transport, TransportAdapter,
};

/// The sockets a client's HTTP agents hold open (in use or pooled), each known by a weak
/// handle to ureq's own stream: a socket leaves the registry when its transport drops.
#[derive(Default)]
pub(crate) struct OpenSockets {
    state: parking_lot::Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    open: Vec<Weak<dyn ShutdownHandle>>,
    /// Set by [`OpenSockets::close`]: no socket is admitted any more.
    closed: bool,
}

impl std::fmt::Debug for OpenSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("OpenSockets")
            .field("open", &state.open.len())
            .field("closed", &state.closed)
            .finish()
    }
}

/// The error of a connection attempted after [`OpenSockets::close`].
pub(crate) const CLOSED: &str = "the client is shut down: no new connection is made";

impl OpenSockets {
    /// Admits a freshly connected socket, or refuses it once closed (the caller then drops it).
    fn admit(&self, socket: Weak<dyn ShutdownHandle>) -> Result<(), ureq::Error> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                CLOSED,
            )));
        }
        // Sockets whose transports dropped go now, so the list stays as long as the pool.
        state.open.retain(|s| s.strong_count() > 0);
        // Through a CONNECT proxy, ureq runs the chain again for the proxy's own socket: the
        // same socket is offered twice.
        if !state.open.iter().any(|s| Weak::ptr_eq(s, &socket)) {
            state.open.push(socket);
        }
        Ok(())
    }

    /// Shuts down every open socket: a call blocked reading or writing on one fails at once
    /// with a transport error, and the pool drops it. Connections made later are not affected.
    pub(crate) fn interrupt(&self) {
        // Taken out of the lock first: a shutdown is a quick system call, but nothing
        // needs the lock while it runs.
        let open = std::mem::take(&mut self.state.lock().open);
        for socket in open.iter().filter_map(Weak::upgrade) {
            socket.shutdown();
        }
    }

    /// [`interrupt`](Self::interrupt), and refuses every later connection with an
    /// [`std::io::ErrorKind::NotConnected`] error ([`CLOSED`]). A TCP connect already under
    /// way is refused as soon as it completes.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.interrupt();
    }

    /// How many registered sockets are still open (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let mut state = self.state.lock();
        state.open.retain(|s| s.strong_count() > 0);
        state.open.len()
    }
}

/// The connector chain of every agent of the crate: a CONNECT tunnel when the agent has a
/// proxy, else a TCP socket (both registered in `sockets`), then TLS for `https` with `tls`.
pub(crate) fn chain(sockets: Arc<OpenSockets>, tls: TlsSource) -> impl Connector<()> {
    ().chain(ConnectProxyConnector::default())
        .chain(RegisteredTcp { sockets })
        .chain(RustlsOver { tls })
}

/// Where a connector takes its rustls configuration from, on the first `https` connection
/// (so that a client that only talks plain `http` to a loopback emulator never builds it).
pub(crate) type TlsSource = Arc<dyn Fn() -> Arc<ClientConfig> + Send + Sync>;

/// ureq's TCP connector, whose sockets are registered in [`OpenSockets`] as well as in the
/// agent's own pool.
struct RegisteredTcp {
    sockets: Arc<OpenSockets>,
}

impl std::fmt::Debug for RegisteredTcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredTcp").finish_non_exhaustive()
    }
}

impl<In: Transport> Connector<In> for RegisteredTcp {
    type Out = <TcpConnector as Connector<In>>::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        // ureq's connector hands each socket it opens to `register_shutdown` right after the
        // connect, before any byte is sent: that is where ours is told too.
        let sockets = self.sockets.clone();
        let agents = details.register_shutdown.clone();
        let details = ConnectionDetails {
            uri: details.uri,
            addrs: details.addrs.clone(),
            config: details.config,
            request_level: details.request_level,
            resolver: details.resolver,
            now: details.now,
            timeout: details.timeout,
            current_time: details.current_time.clone(),
            run_connector: details.run_connector.clone(),
            register_shutdown: Arc::new(move |socket: Weak<dyn ShutdownHandle>| {
                sockets.admit(socket.clone())?;
                agents(socket)
            }),
        };
        TcpConnector::default().connect(&details, chained)
    }
}

/// TLS over the chained transport for `https`, verified with the client's rustls
/// configuration (its roots: trust.rs).
struct RustlsOver {
    tls: TlsSource,
}

impl std::fmt::Debug for RustlsOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RustlsOver").finish_non_exhaustive()
    }
}

impl<In: Transport> Connector<In> for RustlsOver {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(inner) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || inner.is_tls() {
            return Ok(Some(Either::A(inner)));
        }
        let host = details.uri.host().ok_or(ureq::Error::Tls(
            "no host to verify the certificate against",
        ))?;
        // An IPv6 literal comes in brackets.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host)
            .map_err(|_| ureq::Error::Tls("the host is not a valid TLS server name"))?
            .to_owned();
        let connection = ClientConnection::new((self.tls)(), name).map_err(tls_error)?;
        let mut socket = TransportAdapter::new(inner.boxed(), details.current_time.clone());
        // The handshake gets what is left of the connect budget once the TCP connect is done.
        socket.set_timeout(remaining(
            details.timeout,
            details.now,
            (details.current_time)(),
        ));
        let mut stream = StreamOwned::new(connection, socket);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(ureq::Error::from)?;
        }
        Ok(Some(Either::B(TlsTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream,
        })))
    }
}

fn tls_error(e: rustls::Error) -> ureq::Error {
    ureq::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// `timeout` as measured from `now` rather than from `started`.
fn remaining(timeout: NextTimeout, started: UreqInstant, now: UreqInstant) -> NextTimeout {
    let mut left = timeout;
    if let (UreqDuration::Exact(after), UreqInstant::Exact(started), UreqInstant::Exact(now)) =
        (timeout.after, started, now)
    {
        left.after =
            UreqDuration::Exact(after.saturating_sub(now.saturating_duration_since(started)));
    }
    left
}

/// An HTTP/1.1 connection over TLS.
pub(crate) struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport")
            .field("inner", &self.stream.sock.get_ref())
            .finish()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        // TLS may read while it writes: the inner transport applies the right per-step timeout.
        self.stream.sock.set_timeout(timeout);
        self.stream.write_all(&self.buffers.output()[..amount])?;
        self.stream.flush()?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.sock.set_timeout(timeout);
        let read = self.stream.read(self.buffers.input_append_buf())?;
        self.buffers.input_appended(read);
        Ok(read > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.sock.get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}
