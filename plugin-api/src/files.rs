//! Reading the small files a config names (the config itself, secrets, PEM keys): regular
//! files only, up to a size, so that a FIFO, a device or a huge file named by mistake is
//! refused at once instead of wedging a load (a FIFO's open waits for a writer).

use std::io::{self, Read};
use std::path::Path;

/// The largest file read this way unless a caller says otherwise: 1 MiB.
pub const MAX_SMALL_FILE: u64 = 1024 * 1024;

/// The text of `path` when it is a regular file of at most `limit` bytes. Errors keep
/// their kind (`NotFound` stays `NotFound`); anything but a regular file, or a larger one,
/// is `InvalidInput` with a message saying which.
pub fn read_text(path: &Path, limit: u64) -> io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file (it is {})", kind(&meta)),
        ));
    }
    let too_big = || io::Error::new(io::ErrorKind::InvalidInput, format!("larger than {limit} bytes"));
    if meta.len() > limit {
        return Err(too_big());
    }
    // Opened only now that it is known to be a regular file; read no more than the limit
    // even if it grew since.
    let mut text = String::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(text)
}

/// What a file that is not a regular one is, for messages: "a directory", "a FIFO", ...
pub fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = std::env::temp_dir().join(format!("authhost-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.txt");
        std::fs::write(&file, "hello").unwrap();
        assert_eq!(read_text(&file, 10).unwrap(), "hello");
        assert!(read_text(&file, 4).unwrap_err().to_string().contains("larger than 4 bytes"));
        assert!(read_text(&dir, 10).unwrap_err().to_string().contains("a directory"));
        assert_eq!(read_text(&dir.join("missing"), 10).unwrap_err().kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
