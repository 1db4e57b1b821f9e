//! A fault-injecting TCP proxy of our own, put between a replication and its peer: the network
//! misbehaving as it does in the field (a peer down, every connection reset, connections cut
//! mid-stream, a slow link, a peer that accepts and never answers), switched at any moment.
//!
//! Plain threads and std sockets: each accepted connection gets an upstream connection and two
//! pumps; a pump applies the fault in force as each chunk passes, and a switch to `Down` or
//! `Reset` severs every open connection at once (as a host going away would).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to traffic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Passes everything.
    None,
    /// The peer is gone: open connections are cut, new ones reset at once.
    Down,
    /// Every connection, open or new, is reset (RST) as soon as it is seen.
    Reset,
    /// Half the connections are cut after a random number of bytes, up to this many (the
    /// other half pass, so a job always makes progress).
    Cut(usize),
    /// Every chunk waits this long before it is passed on.
    Latency(Duration),
    /// Connections are accepted and read, and nothing ever comes back.
    BlackHole,
}

struct Shared {
    fault: Mutex<Fault>,
    /// Bumped when a fault that severs open connections starts.
    generation: AtomicU64,
    open: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

pub struct FaultProxy {
    /// `127.0.0.1:port` to give the replication instead of the peer's address.
    pub addr: String,
    shared: Arc<Shared>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `upstream` (`host:port`), passing
    /// everything until told otherwise.
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::None),
            generation: AtomicU64::new(0),
            open: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let upstream = upstream.to_owned();
        let sh = shared.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let sh = sh.clone();
                let upstream = upstream.clone();
                std::thread::spawn(move || serve(sh, client, &upstream));
            }
        });
        FaultProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Puts `fault` in force from now on.
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap() = fault;
        if matches!(fault, Fault::Down | Fault::Reset) {
            self.shared.generation.fetch_add(1, Ordering::SeqCst);
            for s in self.shared.open.lock().unwrap().drain(..) {
                reset(&s);
            }
        }
    }

    /// A URL through the proxy for database `db`, with `userinfo` (`user:pass`) if given.
    pub fn url(&self, userinfo: &str, db: &str) -> String {
        format!("http://{userinfo}@{}/{db}", self.addr)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for s in self.shared.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Closes with RST instead of FIN: what a peer that dropped the connection looks like.
fn reset(s: &TcpStream) {
    let _ = socket_linger_zero(s);
    let _ = s.shutdown(Shutdown::Both);
}

fn socket_linger_zero(s: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized `linger` value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn serve(sh: Arc<Shared>, client: TcpStream, upstream: &str) {
    let fault = *sh.fault.lock().unwrap();
    match fault {
        Fault::Down | Fault::Reset => {
            reset(&client);
            return;
        }
        Fault::BlackHole => {
            // Read and drop whatever comes, never answer, until the client gives up or the
            // fault changes.
            let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 4096];
            let mut c = &client;
            loop {
                if sh.stop.load(Ordering::SeqCst) || *sh.fault.lock().unwrap() != Fault::BlackHole {
                    reset(&client);
                    return;
                }
                match c.read(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
            }
        }
        _ => {}
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        reset(&client);
        return;
    };
    {
        let mut open = sh.open.lock().unwrap();
        open.retain(|s| s.peer_addr().is_ok());
        open.push(client.try_clone().unwrap());
        open.push(server.try_clone().unwrap());
    }
    let generation = sh.generation.load(Ordering::SeqCst);
    // One budget per connection: a cut fault ends it after this many bytes either way.
    let budget = Arc::new(AtomicU64::new(match fault {
        Fault::Cut(max) if rand::random::<bool>() => rand::random::<u64>() % (max.max(1) as u64),
        _ => u64::MAX,
    }));
    let up = {
        let (sh, from, to, budget) = (
            sh.clone(),
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
            budget.clone(),
        );
        std::thread::spawn(move || pump(&sh, from, to, generation, &budget))
    };
    pump(&sh, server, client, generation, &budget);
    let _ = up.join();
}

/// Copies `from` to `to` chunk by chunk under the fault in force, until either side closes or
/// a fault ends the connection.
fn pump(sh: &Shared, mut from: TcpStream, mut to: TcpStream, generation: u64, budget: &AtomicU64) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if sh.generation.load(Ordering::SeqCst) != generation {
            break;
        }
        match *sh.fault.lock().unwrap() {
            Fault::Latency(d) => std::thread::sleep(d),
            Fault::Down | Fault::Reset | Fault::BlackHole => break,
            Fault::None | Fault::Cut(_) => {}
        }
        let left = budget.load(Ordering::SeqCst);
        if (n as u64) > left {
            // The cut: what fits goes through, then both sides see the connection die.
            let _ = to.write_all(&buf[..left as usize]);
            budget.store(0, Ordering::SeqCst);
            reset(&from);
            reset(&to);
            return;
        }
        budget.fetch_sub(n as u64, Ordering::SeqCst);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
