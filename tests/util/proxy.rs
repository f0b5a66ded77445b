//! A threaded HTTP CONNECT proxy on 127.0.0.1 for the proxy tests: it records every tunnel it
//! opened, can require Basic credentials, and can be stopped and started again on its port.

use parking_lot::Mutex;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
struct State {
    /// `host:port` of every tunnel opened, in order.
    tunnels: Vec<String>,
    /// Requests refused with 407.
    refused: usize,
    /// Live connections (both sides), shut at `stop`.
    open: Vec<TcpStream>,
}

pub struct ConnectProxy {
    port: u16,
    /// `Basic` token wanted in `Proxy-Authorization`, if any.
    wanted: Option<String>,
    state: Arc<Mutex<State>>,
    running: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl ConnectProxy {
    /// Starts a proxy; with `credentials`, a CONNECT without them gets 407 (scheme Basic).
    pub fn start(credentials: Option<(&str, &str)>) -> ConnectProxy {
        use base64::Engine as _;
        let wanted = credentials.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let mut proxy = ConnectProxy {
            port: 0,
            wanted,
            state: Arc::default(),
            running: Arc::new(AtomicBool::new(false)),
            acceptor: None,
        };
        proxy.listen(TcpListener::bind("127.0.0.1:0").expect("bind proxy"));
        proxy
    }

    fn listen(&mut self, listener: TcpListener) {
        self.port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        self.running.store(true, Ordering::SeqCst);
        let (state, running, wanted) = (
            self.state.clone(),
            self.running.clone(),
            self.wanted.clone(),
        );
        self.acceptor = Some(std::thread::spawn(move || {
            while running.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (state, wanted) = (state.clone(), wanted.clone());
                        std::thread::spawn(move || serve(client, state, wanted));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
    }

    /// `http://127.0.0.1:<port>`, optionally with user info.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// Every tunnel target so far (`host:port`).
    pub fn tunnels(&self) -> Vec<String> {
        self.state.lock().tunnels.clone()
    }

    /// How many CONNECTs were refused with 407.
    pub fn refused(&self) -> usize {
        self.state.lock().refused
    }

    /// Stops accepting and cuts every open tunnel.
    pub fn stop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in self.state.lock().open.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        let listener = (0..200)
            .find_map(|_| {
                TcpListener::bind(("127.0.0.1", self.port))
                    .map_err(|_| std::thread::sleep(Duration::from_millis(25)))
                    .ok()
            })
            .expect("rebind the proxy's port");
        self.listen(listener);
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(mut client: TcpStream, state: Arc<Mutex<State>>, wanted: Option<String>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or("");
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "CONNECT" {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_owned());
    if wanted.is_some() && authorization != wanted {
        state.lock().refused += 1;
        let _ = client.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
        );
        return;
    }
    let Ok(upstream) = TcpStream::connect(target) else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    {
        let mut st = state.lock();
        st.tunnels.push(target.to_owned());
        st.open.push(client.try_clone().unwrap());
        st.open.push(upstream.try_clone().unwrap());
    }
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let _ = client.set_read_timeout(None);
    let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let (mut u, mut c) = (upstream, client);
    let _ = std::io::copy(&mut u, &mut c);
    let _ = c.shutdown(Shutdown::Both);
    let _ = up.join();
}
