//! `kvs local` and the control-plane subcommands.

use kvs_core::auth::{Credentials, DefaultChain};
use kvs_core::client::{ClientConfig, CreateStream, KvsClient, StreamId};
use kvs_core::local::{LocalConfig, LocalEndpoint};

/// Where and as whom to call.
#[derive(clap::Args, Debug)]
pub struct AwsArgs {
    /// Control-plane URL (e.g. the `kvs local` URL); default: the region's AWS endpoint.
    #[arg(long)]
    endpoint: Option<String>,
    /// AWS region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

pub fn client(aws: &AwsArgs) -> Result<KvsClient, String> {
    let chain = DefaultChain::new();
    let mut cfg = match (chain.load(), &aws.endpoint) {
        (Ok(_), _) => ClientConfig::new(&aws.region, chain),
        // A local endpoint does not need real keys.
        (Err(_), Some(e)) if kvs_core::client::endpoint::is_loopback_url(e) => ClientConfig::new(
            &aws.region,
            Credentials::new("local", "local", None, None, "kvs-local"),
        ),
        (Err(e), _) => return Err(format!("no AWS credentials: {e}")),
    };
    if let Some(e) = &aws.endpoint {
        cfg = cfg.endpoint(e);
    }
    KvsClient::new(cfg).map_err(|e| e.to_string())
}

pub fn local(mut cfg: LocalConfig, faults: &[String]) -> Result<(), String> {
    let port = cfg.port;
    for f in faults {
        cfg.faults.apply(f)?;
    }
    runtime()?.block_on(async {
        let ep = LocalEndpoint::start(cfg)
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
        println!("KVS endpoint listening on {} (Ctrl-C stops it)", ep.url());
        tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
        ep.shutdown().await;
        Ok(())
    })
}

pub fn create_stream(
    aws: &AwsArgs,
    name: &str,
    retention_hours: u32,
    media_type: Option<String>,
) -> Result<(), String> {
    let c = client(aws)?;
    let input = CreateStream {
        stream_name: name.to_owned(),
        data_retention_in_hours: retention_hours,
        media_type,
        ..CreateStream::default()
    };
    let arn = runtime()?
        .block_on(c.create_stream(&input))
        .map_err(|e| e.to_string())?;
    println!("{arn}");
    Ok(())
}

pub fn describe_stream(aws: &AwsArgs, name: &str) -> Result<(), String> {
    let c = client(aws)?;
    let s = runtime()?
        .block_on(c.describe_stream(StreamId::from(name)))
        .map_err(|e| e.to_string())?;
    println!("name:      {}", s.stream_name);
    println!("arn:       {}", s.stream_arn);
    println!("status:    {}", s.status.unwrap_or_default());
    println!("media:     {}", s.media_type.unwrap_or_default());
    println!("retention: {} h", s.data_retention_in_hours.unwrap_or(0));
    println!("version:   {}", s.version.unwrap_or_default());
    Ok(())
}

pub fn list_streams(aws: &AwsArgs) -> Result<(), String> {
    let c = client(aws)?;
    for s in runtime()?
        .block_on(c.list_streams())
        .map_err(|e| e.to_string())?
    {
        println!(
            "{}\t{}\t{}",
            s.stream_name,
            s.status.unwrap_or_default(),
            s.stream_arn
        );
    }
    Ok(())
}

pub fn delete_stream(aws: &AwsArgs, name: &str) -> Result<(), String> {
    let c = client(aws)?;
    let rt = runtime()?;
    let arn = match StreamId::from(name) {
        StreamId::Arn(a) => a,
        StreamId::Name(n) => {
            rt.block_on(c.describe_stream(StreamId::Name(n)))
                .map_err(|e| e.to_string())?
                .stream_arn
        }
    };
    rt.block_on(c.delete_stream(&arn, None))
        .map_err(|e| e.to_string())?;
    Ok(())
}

pub fn list_fragments(
    c: &KvsClient,
    stream: &str,
    range: Option<(f64, f64)>,
    server: bool,
) -> Result<(), String> {
    use kvs_core::client::FragmentSelector;
    let at = |s: f64| {
        std::time::Duration::try_from_secs_f64(s)
            .map(|d| std::time::UNIX_EPOCH + d)
            .map_err(|_| format!("{s} is not a time in epoch seconds"))
    };
    let selector = match range {
        None => None,
        Some((a, b)) => {
            let (start, end) = (at(a)?, at(b)?);
            Some(if server {
                FragmentSelector::Server { start, end }
            } else {
                FragmentSelector::Producer { start, end }
            })
        }
    };
    let mut frags = runtime()?
        .block_on(c.list_fragments(StreamId::from(stream), selector))
        .map_err(|e| e.to_string())?;
    frags.sort_by(|a, b| a.producer_timestamp.total_cmp(&b.producer_timestamp));
    println!("fragment number\tproducer\tserver\tbytes\tms");
    for f in frags {
        println!(
            "{}\t{:.3}\t{:.3}\t{}\t{}",
            f.fragment_number,
            f.producer_timestamp,
            f.server_timestamp,
            f.fragment_size_in_bytes,
            f.fragment_length_in_milliseconds
        );
    }
    Ok(())
}
