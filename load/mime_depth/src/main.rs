//! Does mail-parser's parse of a message of N nested message/rfc822 parts (and freeing
//! the result) fit a 2 MiB thread stack, tokio's worker default? Each N runs in a child
//! process, because a stack overflow aborts the process.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 {
        let n: usize = args[2].parse().unwrap();
        let mut msg = Vec::new();
        for _ in 0..n {
            msg.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        msg.extend_from_slice(b"Subject: deep\r\n\r\nbody\r\n");
        let t = std::time::Instant::now();
        let h = std::thread::Builder::new().stack_size(2 << 20).spawn(move || {
            let m = mail_parser::MessageParser::default().parse(&msg);
            m.map(|m| m.parts.len()).unwrap_or(0)
        }).unwrap();
        let parts = h.join().unwrap();
        println!("ok n={n} parts={parts} {:?}", t.elapsed());
        return;
    }
    for n in [100usize, 1_000, 10_000, 30_000, 50_000, 100_000] {
        let out = std::process::Command::new(&args[0]).args(["child", &n.to_string()]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        println!("n={n} bytes={} -> {} {}", n * 32, out.status, text.trim());
    }
}
