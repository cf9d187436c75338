//! `axum-service`: serves the example on `LISTEN` (default 127.0.0.1:8080), asking the authz
//! server at `AUTHZ_SERVER` (default http://127.0.0.1:50051) with `AUTHZ_API_KEY`.
//!
//! ```sh
//! cargo run --release &                      # authzd
//! cargo run -p axum-service &
//! curl -H 'x-tenant: acme' -H 'x-user: alice' localhost:8080/reports
//! ```

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::var("AUTHZ_SERVER").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let authz = authz_client::Client::builder()
        .endpoints(server.split(','))
        .api_key(std::env::var("AUTHZ_API_KEY").unwrap_or_default())
        .timeout(Duration::from_millis(500))
        .connect()
        .await?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, axum_service::router(authz)).await?;
    Ok(())
}
